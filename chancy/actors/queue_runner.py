"""A running queue: its executor and fetcher in one group, started and stopped as a unit.

Stopping drains: the fetcher stops claiming, running jobs get up to the given timeout to
finish, then the executor is cancelled and whatever still runs is put back to pending.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from chancy.actors.fetcher import Fetcher
from chancy.events import QUEUE_REMOVED, QUEUE_STARTED, Flag
from chancy.executors.base import Executor, load_executor

if TYPE_CHECKING:
    from chancy.queue import Queue
    from chancy.worker import Worker


async def first_of(*waits: object) -> None:
    """Return as soon as the first of the given awaitable factories returns."""
    async with anyio.create_task_group() as tg:

        async def one(wait: object) -> None:
            await wait()  # type: ignore[operator]
            tg.cancel_scope.cancel()

        for wait in waits:
            tg.start_soon(one, wait)


class QueueRunner:
    def __init__(self, worker: Worker, queue: Queue) -> None:
        self.worker = worker
        self.queue = queue
        self.executor: Executor | None = None
        self.fetcher: Fetcher | None = None
        #: Set when the runner ended (stopped, or failed to start).
        self.done = Flag()
        #: Whether the executor could not be loaded or started.
        self.failed = False
        #: Why it failed (shown in `get_all_workers()["queue_status"]`).
        self.error: str | None = None
        #: After a stop: whether every running job finished in time.
        self.drained = True
        self._stop = Flag()
        self._timeout = math.inf

    def request_stop(self, timeout: float = math.inf) -> None:
        self._timeout = min(self._timeout, timeout)
        self._stop.set()

    async def run(self) -> None:
        worker, queue = self.worker, self.queue
        try:
            try:
                executor = load_executor(worker, queue)
            except Exception as exc:
                self.failed, self.error = True, str(exc)
                worker.log.error("%s; the worker keeps serving its other queues", exc)
                return
            self.executor = executor
            try:
                await self._serve(executor)
            except Exception as exc:
                self.failed, self.error = True, f"executor crashed: {type(exc).__name__}: {exc}"
                worker.log.exception(
                    "queue %r: executor %s crashed; the worker keeps serving its other queues",
                    queue.name,
                    queue.executor,
                )
            finally:
                released = executor.release_unfinished()
                if released:
                    worker.log.info(
                        "queue %r: put %d unfinished jobs back to pending",
                        queue.name,
                        len(released),
                    )
        finally:
            self.done.set()

    async def _serve(self, executor: Executor) -> None:
        worker, queue = self.worker, self.queue
        async with anyio.create_task_group() as tg:
            try:
                await tg.start(executor.run)
            except Exception as exc:
                self.failed, self.error = True, f"executor failed to start: {exc}"
                worker.log.error(
                    "queue %r: executor %s failed to start: %s; the worker keeps serving its"
                    " other queues",
                    queue.name,
                    queue.executor,
                    exc,
                )
                tg.cancel_scope.cancel()
                return
            worker._executors[queue.name] = executor
            worker.hub.emit(QUEUE_STARTED, queue=queue, executor=executor, worker=worker)
            try:
                self.fetcher = Fetcher(worker, queue, executor)
                fetch_scope = anyio.CancelScope()
                fetch_done = Flag()

                async def fetch() -> None:
                    try:
                        with fetch_scope:
                            await self.fetcher.run()  # type: ignore[union-attr]
                    finally:
                        fetch_done.set()

                tg.start_soon(fetch)
                worker.log.info(
                    "queue %r: running with %s (concurrency %d)",
                    queue.name,
                    type(executor).__name__,
                    queue.concurrency,
                )
                await self._stop.wait()
                fetch_scope.cancel()
                with anyio.move_on_after(self._timeout):
                    # A claim in flight is shielded: let its jobs reach the executor first, so
                    # they are run (or put back) and not mistaken for jobs cut off at the end.
                    await first_of(fetch_done.wait, worker._force.wait)
                    if executor.running:
                        await first_of(executor.wait_idle, worker._force.wait)
                self.drained = not executor.running
                tg.cancel_scope.cancel()
            finally:
                if worker._executors.get(queue.name) is executor:
                    del worker._executors[queue.name]
                worker.hub.emit(QUEUE_REMOVED, queue=queue, executor=executor, worker=worker)
