"""The outgoing batcher: writes job updates in batches, one statement and one notice per batch.

`Worker.queue_update` puts a job's new state in the `Outbox`. Batching is natural: when no
write is in flight, the batcher writes what is waiting at once (so a lone completion reaches the
database, and `Chancy.wait_for_job`, within a round trip); whatever arrives while a write is in
flight waits for it to end and goes in the next write, up to the outbox's `batch_size` updates
per write. Busy workers get big batches, idle ones low latency, with no timer to tune.

`Worker.send_outgoing_interval` (default 0) is the minimum number of seconds between the starts
of two writes: above 0, updates arriving sooner than that after a write began wait (and gather)
until the gap has passed, or until a batch fills, which is always written at once. It trades
latency for fewer, bigger writes; the first update after a quiet spell longer than the interval
is still written at once.

Each batch is one guarded statement that also sends one notice naming the finished jobs, so
`Chancy.wait_for_job` wakes at once. A failed write is retried with backoff and never dropped;
when the batcher is stopped mid-write, the batch goes back to the outbox for the worker's final,
shielded flush. Back-pressure is the fetchers' (they stop claiming while the outbox is long).
"""

from __future__ import annotations

import collections
import json
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from chancy._result import without_nul
from chancy._sql import EPOCH, update_jobs_query
from chancy._sql import MICROSECOND as MICRO
from chancy.events import BATCH_WRITTEN, DB_ERROR, Wakeup

if TYPE_CHECKING:
    from chancy.job import QueuedJob
    from chancy.worker import Worker


class Outbox:
    """The queue of job updates waiting to be written (`Worker.outgoing`)."""

    def __init__(self, batch_size: int = 1000) -> None:
        self.batch_size = batch_size
        self._items: collections.deque[QueuedJob] = collections.deque()
        self.arrived = Wakeup()
        self.full = Wakeup()

    def __len__(self) -> int:
        return len(self._items)

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, job: QueuedJob) -> None:
        self._items.append(job)
        size = len(self._items)
        if size == 1:
            self.arrived.set()
        if size >= self.batch_size:
            self.full.set()

    async def put(self, job: QueuedJob) -> None:
        self.put_nowait(job)

    def take(self, limit: int) -> list[QueuedJob]:
        items = self._items
        count = min(limit, len(items))
        return [items.popleft() for _ in range(count)]

    def put_back(self, batch: list[QueuedJob]) -> None:
        """Return a batch that could not be written to the front, keeping its order."""
        self._items.extendleft(reversed(batch))
        if self._items:
            self.arrived.set()


def _json(job: QueuedJob, field: str, value: Any, log: Any) -> str:
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
        if "\\u0000" in text:
            text = json.dumps(without_nul(value), allow_nan=False, separators=(",", ":"))
        return text
    except (TypeError, ValueError) as exc:
        log.error(
            "job %s: its %s cannot be stored as JSON (%s); storing a note", job.id, field, exc
        )
        note = f"{field} could not be saved: {exc}"
        if field == "meta":
            return json.dumps({"chancy_error": note})
        return "null" if field == "result" else "[]"


def _micros(value: datetime | None) -> int | None:
    """A time as microseconds since the epoch (a naive one taken as UTC)."""
    if value is None:
        return None
    return ((value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - EPOCH) // MICRO


def batch_document(worker: Worker, batch: list[QueuedJob]) -> str:
    """The batch as the JSON document `update_jobs_query` reads: one array a job (id, state,
    scheduled_at and completed_at in microseconds, meta, errors, attempts, result), not an
    object, which spares encoding and parsing eight keys a job. A null result writes NULL."""
    try:
        rows = [
            [
                job.id,
                job.state.value,
                None if job.scheduled_at is None else (job.scheduled_at - EPOCH) // MICRO,
                None if job.completed_at is None else (job.completed_at - EPOCH) // MICRO,
                job.meta,
                job.errors,
                job.attempts,
                job.result,
            ]
            for job in batch
        ]
    except TypeError:  # a naive time (the one-by-one helper takes it as UTC)
        rows = [
            [
                job.id,
                job.state.value,
                _micros(job.scheduled_at),
                _micros(job.completed_at),
                job.meta,
                job.errors,
                job.attempts,
                job.result,
            ]
            for job in batch
        ]
    try:
        text = json.dumps(rows, allow_nan=False, separators=(",", ":"))
        if "\\u0000" not in text:
            return text
    except (TypeError, ValueError):
        pass
    for row, job in zip(rows, batch, strict=True):  # the slow path: find and fix the bad ones
        row[4] = json.loads(_json(job, "meta", job.meta, worker.log))
        row[5] = json.loads(_json(job, "errors", job.errors, worker.log))
        if job.result is not None:
            row[7] = json.loads(_json(job, "result", job.result, worker.log))
    return json.dumps(rows, allow_nan=False, separators=(",", ":"))


def batch_params(worker: Worker, batch: list[QueuedJob]) -> list[Any]:
    chancy = worker.chancy
    return [
        batch_document(worker, batch),
        worker.taken_by,
        chancy.tables.channel,
        chancy.notifications,
    ]


class Batcher:
    """The actor that drains `worker.outgoing` into the database."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.outbox = worker.outgoing
        self._query = update_jobs_query(worker.chancy.tables)
        #: Test hook: rows written so far.
        self.written = 0

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        outbox = self.outbox
        last_write = -math.inf
        while True:
            while outbox.empty():
                await outbox.arrived.wait()
            # Writes are sequential, so what arrived during the last write is all here now.
            gap = self.worker.send_outgoing_interval
            if gap > 0:
                # A stale `full` wake-up (from a batch already taken) just loops once more.
                while len(outbox) < outbox.batch_size:
                    remaining = last_write + gap - anyio.current_time()
                    if remaining <= 0:
                        break
                    await outbox.full.wait(remaining)
            batch = outbox.take(outbox.batch_size)
            if batch:
                last_write = anyio.current_time()
                await self.write(batch)

    async def write(self, batch: list[QueuedJob], *, deadline: float = math.inf) -> bool:
        """Write `batch`, retrying with backoff until it is written or `deadline` passes.

        Returns False (and puts the batch back) when the deadline passed first. A batch that
        keeps failing is split in halves, so one update the database refuses cannot hold back
        the others (that one is retried on its own, still never dropped).
        """
        delay = 0.05
        failures = 0
        params = batch_params(self.worker, batch)
        while True:
            try:
                async with self.worker.chancy.db.connection() as conn:
                    row = await conn.fetchone(self._query, params)
                break
            except anyio.get_cancelled_exc_class():
                # Stopped mid-write: the final flush writes it again (a repeat changes nothing).
                self.outbox.put_back(batch)
                raise
            except Exception as exc:
                self.worker.hub.emit(DB_ERROR, operation="write", error=exc)
                failures += 1
                if anyio.current_time() + delay > deadline:
                    self.outbox.put_back(batch)
                    return False
                self.worker.log.warning(
                    "writing %d job updates failed (%s); retrying in %.2f s",
                    len(batch),
                    str(exc).strip() or type(exc).__name__,
                    delay,
                )
                await self._sleep(delay, batch)
                delay = min(delay * 2, 5.0)
                if failures >= 3 and len(batch) > 1:
                    half = len(batch) // 2
                    first, second = batch[:half], batch[half:]
                    try:
                        written = await self.write(first, deadline=deadline)
                    except anyio.get_cancelled_exc_class():
                        self.outbox.put_back(second)
                        raise
                    if not written:
                        self.outbox.put_back(second)
                        return False
                    return await self.write(second, deadline=deadline)
        updated = row[0] if row else 0
        self.written += updated
        if updated < len(batch):
            self.worker.log.info(
                "%d of %d job updates changed nothing: those jobs are no longer held by this"
                " worker (given back after a missed heartbeat, or already put back)",
                len(batch) - updated,
                len(batch),
            )
        self.worker.hub.emit(BATCH_WRITTEN, count=len(batch), updated=updated, jobs=batch)
        return True

    async def _sleep(self, delay: float, batch: list[QueuedJob]) -> None:
        try:
            await anyio.sleep(delay)
        except anyio.get_cancelled_exc_class():
            self.outbox.put_back(batch)
            raise

    async def flush(self, *, timeout: float) -> bool:
        """Write everything in the outbox (call shielded); False if `timeout` ran out."""
        deadline = anyio.current_time() + timeout
        while not self.outbox.empty():
            if not await self.write(self.outbox.take(self.outbox.batch_size), deadline=deadline):
                return False
        return True
