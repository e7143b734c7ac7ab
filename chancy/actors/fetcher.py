"""The fetcher (one per running queue): claims jobs up to its executor's free slots.

It wakes on the first of: a push notification for its queue, a slot coming free, or its
jittered `polling_interval` timer. A claim that returns fewer jobs than asked means the queue
looks empty (or rate limited), so freed slots alone do not trigger another claim until a
notification or the timer says there may be more. Claims are shielded from cancellation from
the moment the statement is sent until the jobs are in the executor, so a stopping fetcher
never strands a claimed job.
"""

from __future__ import annotations

import math
import random
import time
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from chancy.events import DB_ERROR, JOBS_CLAIMED, QUEUE_FULL, QUEUE_WAKE, HubEvent

if TYPE_CHECKING:
    from chancy.executors.base import Executor
    from chancy.queue import Queue
    from chancy.worker import Worker

#: Above this many unwritten updates, fetchers pause claiming (back-pressure).
MAX_OUTGOING_BACKLOG = 20_000


class Fetcher:
    def __init__(self, worker: Worker, queue: Queue, executor: Executor) -> None:
        self.worker = worker
        self.queue = queue
        self.executor = executor
        self._hint = True
        #: Test hook: jobs claimed so far.
        self.claimed = 0

    def _on_wake(self, event: HubEvent) -> None:
        name = event.body.get("queue")
        if name is None or name == self.queue.name:
            self._hint = True
            self.executor.wakeup.set()

    def _next_window(self) -> float:
        window = self.queue.rate_limit_window or 1
        now = time.time()
        return math.floor(now / window) * window + window - now + 0.01

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        worker, queue, executor = self.worker, self.queue, self.executor
        off = worker.hub.on(QUEUE_WAKE, self._on_wake)
        interval = float(queue.polling_interval)
        next_poll = 0.0
        delay = 0.1
        full = False  # announce QUEUE_FULL once each time the executor fills up
        task_status.started()
        try:
            while True:
                now = anyio.current_time()
                if now >= next_poll:
                    self._hint = True
                slots = executor.free_slots()
                if self._hint and slots > 0:
                    if worker.outgoing.qsize() > MAX_OUTGOING_BACKLOG:
                        await anyio.sleep(0.05)
                        continue
                    if self._presumed_dead():
                        # Other workers count us dead and rescue what we hold: a job claimed
                        # now would be rescued and run again elsewhere. Wait for a heartbeat.
                        await anyio.sleep(0.1)
                        continue
                    try:
                        got = await self._claim(slots)
                    except Exception as exc:
                        worker.hub.emit(DB_ERROR, operation="claim", error=exc)
                        worker.log.warning(
                            "queue %r: claiming jobs failed (%s); retrying in %.1f s",
                            queue.name,
                            exc,
                            delay,
                        )
                        await anyio.sleep(delay)
                        delay = min(delay * 2, 5.0)
                        continue
                    delay = 0.1
                    next_poll = anyio.current_time() + interval * random.uniform(0.9, 1.1)
                    self._hint = got >= slots
                    if got < slots and queue.rate_limit is not None:
                        next_poll = min(next_poll, anyio.current_time() + self._next_window())
                    continue
                if slots == 0 and not full:
                    worker.hub.emit(QUEUE_FULL, queue=queue, executor=executor, worker=worker)
                full = slots == 0
                timeout = math.inf if slots == 0 else max(0.0, next_poll - anyio.current_time())
                await executor.wakeup.wait(timeout)
        finally:
            off()

    def _presumed_dead(self) -> bool:
        """Whether this worker's last successful heartbeat is older than its timeout."""
        heartbeat = self.worker.heartbeat
        last = getattr(heartbeat, "last_beat", None)
        return last is not None and time.monotonic() - last > self.worker.heartbeat_timeout

    async def _claim(self, slots: int) -> int:
        worker, executor = self.worker, self.executor
        jobs = []
        try:
            async with worker.chancy.db.connection() as conn:
                with anyio.CancelScope(shield=True):
                    jobs = await worker.fetch_jobs(self.queue, conn, up_to=slots)
        finally:
            if jobs:
                with anyio.CancelScope(shield=True):
                    for job in jobs:
                        await executor.submit(job)
                self.claimed += len(jobs)
                worker.hub.emit(JOBS_CLAIMED, queue=self.queue, jobs=jobs)
        return len(jobs)
