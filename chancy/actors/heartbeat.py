"""The heartbeat: announces the worker every `heartbeat_poll_interval` seconds, removes workers
whose heartbeat expired (`heartbeat_timeout`), and notices cancellation requests for the jobs
this worker runs even when a notification was missed."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from chancy._sql import cancel_requested_query, expire_workers_query
from chancy.events import DB_ERROR, JOB_CANCELLED, Wakeup

if TYPE_CHECKING:
    from chancy.worker import Worker

#: The longest wait between two checks for cancelled jobs while jobs run.
CANCEL_CHECK_INTERVAL = 5.0


class Heartbeat:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        #: Test hook: how many announcements succeeded.
        self.beats = 0
        #: `time.monotonic()` of the last successful announcement (None before the first).
        self.last_beat: float | None = None
        #: Set it to announce at once (the queue watcher does when the worker's queues change).
        self.wakeup = Wakeup()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        worker = self.worker
        await self._beat()
        task_status.started()
        tick = min(worker.heartbeat_poll_interval, CANCEL_CHECK_INTERVAL)
        next_beat = anyio.current_time() + worker.heartbeat_poll_interval
        while True:
            if await self.wakeup.wait(tick):
                next_beat = anyio.current_time()
            if anyio.current_time() >= next_beat:
                if await self._beat():
                    next_beat = anyio.current_time() + worker.heartbeat_poll_interval
                else:
                    next_beat = anyio.current_time() + min(tick, 1.0)
            if worker.running_jobs():
                await self._check_cancelled()

    async def _beat(self) -> bool:
        worker = self.worker
        try:
            async with worker.chancy.db.connection() as conn:
                await worker.announce_worker(conn)
                expired = await conn.fetchall(expire_workers_query(worker.chancy.tables))
        except Exception as exc:
            worker.hub.emit(DB_ERROR, operation="heartbeat", error=exc)
            worker.log.warning("worker %s: heartbeat failed (%s); retrying", worker.worker_id, exc)
            return False
        self.beats += 1
        self.last_beat = time.monotonic()
        if expired:
            worker.log.info(
                "workers %s missed their heartbeat and were removed",
                ", ".join(r[0] for r in expired),
            )
        return True

    async def _check_cancelled(self) -> None:
        worker = self.worker
        try:
            async with worker.chancy.db.connection() as conn:
                rows = await conn.fetchall(
                    cancel_requested_query(worker.chancy.tables), {"taken_by": worker.taken_by}
                )
        except Exception as exc:
            worker.hub.emit(DB_ERROR, operation="cancel_check", error=exc)
            worker.log.warning("checking for cancelled jobs failed (%s)", exc)
            return
        for (job_id,) in rows:
            worker.hub.emit(JOB_CANCELLED, id=job_id)
