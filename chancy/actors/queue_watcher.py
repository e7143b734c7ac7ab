"""The queue watcher: decides which declared queues this worker runs and keeps them running.

A queue runs here when it is ACTIVE and each of its tags (a regular expression) fully matches
at least one of `Worker.worker_tags()`. The watcher looks again on every "queue.changed"
notification, else every `queue_change_poll_interval` seconds. A queue whose settings changed,
that was paused, deleted or no longer matches is drained (up to `shutdown_timeout`) before its
new settings take over. A queue whose executor fails to load, start or keeps crashing is retried after `RETRY_BROKEN`
seconds, `RESTART_BUDGET` times in a row; then only every `BROKEN_PAUSE` seconds, until it
runs again or its settings change (which resets the count). Each worker's row shows it
(`queue_status`: failures and when the next try is). The other queues keep running.

A queue paused with a `resume_at` reads as active once that time has passed (the database
decides, see `chancy._sql.QUEUE_SELECT`); the watcher looks again at that moment, so every
worker resumes it on time without a notice.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from chancy.actors.queue_runner import QueueRunner
from chancy.events import QUEUE_CHANGED, QUEUE_UPDATED, Wakeup
from chancy.queue import Queue

if TYPE_CHECKING:
    from chancy.worker import Worker

#: Seconds before a queue whose executor failed is tried again (unless it changes first)...
RETRY_BROKEN = 10.0
#: ... for this many failures in a row; after that, only every `BROKEN_PAUSE` seconds.
RESTART_BUDGET = 3
BROKEN_PAUSE = 300.0


def queue_matches(queue: Queue, worker_tags: set[str]) -> bool:
    """Whether every tag of the queue matches at least one worker tag (as a full regex match)."""
    for pattern in queue.tags:
        regex = re.compile(pattern)
        if not any(regex.fullmatch(tag) for tag in worker_tags):
            return False
    return True


class QueueWatcher:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.runners: dict[str, QueueRunner] = {}
        self.wakeup = Wakeup()
        #: Queues whose executor failed: (queue, retry after, error).
        self._broken: dict[str, tuple[Queue, float, str]] = {}
        #: Failures in a row of each queue's executor, with the settings they happened with.
        self._failures: dict[str, tuple[Queue, int]] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._stopping = False
        #: Test hook: how many refreshes completed.
        self.refreshes = 0
        #: The earliest `resume_at` of the paused queues seen by the last refresh.
        self._next_resume: datetime | None = None

    @property
    def queue_names(self) -> list[str]:
        return sorted(self.runners)

    @property
    def queue_status(self) -> dict[str, dict[str, str]]:
        """`{queue: {"status": "running" | "starting" | "failed", "error": ...}}` of this worker."""
        now = anyio.current_time()
        status: dict[str, dict[str, Any]] = {
            name: {
                "status": "failed",
                "error": error,
                "failures": self._failures.get(name, (None, 1))[1],
                "retry_in": max(0, round(retry_at - now)),
            }
            for name, (_, retry_at, error) in self._broken.items()
        }
        for name, runner in self.runners.items():
            status[name] = {"status": "running" if runner.fetcher is not None else "starting"}
        return status

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        worker = self.worker
        off = worker.hub.on(QUEUE_CHANGED, lambda _event: self.wakeup.set())
        delay = 0.1
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self._refresh_logged()
                task_status.started()
                while True:
                    await self.wakeup.wait(self._wait_time())
                    if self._stopping:
                        continue
                    if await self._refresh_logged():
                        delay = 0.1
                    else:
                        await anyio.sleep(delay)
                        delay = min(delay * 2, 5.0)
        finally:
            off()

    def _wait_time(self) -> float:
        wait = float(self.worker.queue_change_poll_interval)
        if self._next_resume is not None:
            until = (self._next_resume - datetime.now(UTC)).total_seconds()
            # A little after it, and never a busy loop when the clocks disagree a little.
            wait = min(wait, max(until + 0.05, 0.2))
        return wait

    async def _refresh_logged(self) -> bool:
        try:
            await self.refresh()
            return True
        except Exception as exc:
            self.worker.log.warning("reading the queues failed (%s); retrying", exc)
            return False

    async def refresh(self) -> None:
        worker = self.worker
        queues = await worker.chancy.get_all_queues()
        if self._stopping:
            return
        tags = worker.worker_tags()
        self._next_resume = min(
            (q.resume_at for q in queues if q.resume_at is not None and queue_matches(q, tags)),
            default=None,
        )
        wanted = {
            q.name: q for q in queues if q.state == Queue.State.ACTIVE and queue_matches(q, tags)
        }
        for name, runner in list(self.runners.items()):
            new = wanted.get(name)
            if runner.queue != new:
                runner.request_stop(worker.shutdown_timeout)
                if new is not None:  # still served, with other settings
                    worker.hub.emit(QUEUE_UPDATED, queue=new, previous=runner.queue, worker=worker)
        for name in set(self._broken) - set(wanted):
            del self._broken[name]
        for name in set(self._failures) - set(wanted):
            del self._failures[name]
        before = set(self.runners)
        now = anyio.current_time()
        for name, queue in wanted.items():
            if name in self.runners:
                continue
            broken = self._broken.get(name)
            if broken is not None and broken[0] == queue and now < broken[1]:
                continue
            self._broken.pop(name, None)
            self._start(queue)
        if set(self.runners) != before and worker.heartbeat is not None:
            worker.heartbeat.wakeup.set()  # announce the new set of queues
        self.refreshes += 1

    def _start(self, queue: Queue) -> None:
        assert self._tg is not None
        runner = QueueRunner(self.worker, queue)
        self.runners[queue.name] = runner

        async def run() -> None:
            try:
                await runner.run()
            finally:
                if self.runners.get(queue.name) is runner:
                    del self.runners[queue.name]
                    if self.worker.heartbeat is not None and not self._stopping:
                        self.worker.heartbeat.wakeup.set()
                if runner.failed:
                    last, count = self._failures.get(queue.name, (queue, 0))
                    count = count + 1 if last == queue else 1
                    self._failures[queue.name] = (queue, count)
                    pause = RETRY_BROKEN if count <= RESTART_BUDGET else BROKEN_PAUSE
                    if count == RESTART_BUDGET + 1:
                        self.worker.log.error(
                            "queue %r failed %d times in a row; trying again every %.0f s "
                            "(or as soon as its settings change)",
                            queue.name,
                            RESTART_BUDGET,
                            BROKEN_PAUSE,
                        )
                    self._broken[queue.name] = (
                        queue,
                        anyio.current_time() + pause,
                        runner.error or "could not start",
                    )
                elif runner.executor is not None:
                    self._failures.pop(queue.name, None)  # it ran: the budget is whole again
                if not self._stopping:
                    self.wakeup.set()  # start the queue again with its new settings

        self._tg.start_soon(run)

    async def stop_all(self, timeout: float = math.inf) -> bool:
        """Stop every queue, giving running jobs up to `timeout` seconds; True if all finished."""
        self._stopping = True
        runners = list(self.runners.values())
        for runner in runners:
            runner.request_stop(timeout)
        for runner in runners:
            await runner.done.wait()
        return all(runner.drained for runner in runners)
