"""The outgoing batcher: natural batching (write at once, gather while a write is in flight),
the minimum gap of `send_outgoing_interval`, and a full batch written at once."""

from __future__ import annotations

import anyio
import pytest
from support import FAST, eventually, fetch

from chancy import Chancy, Job, Queue, QueuedJob
from chancy.actors.batcher import Batcher
from chancy.events import BATCH_WRITTEN
from chancy.executors.asyncex import AsyncExecutor
from chancy.hub import HubEvent
from chancy.worker import Worker

pytestmark = pytest.mark.anyio


async def _claimed(chancy: Chancy, worker: Worker, count: int) -> list[QueuedJob]:
    """`count` jobs claimed by `worker` (not started) and their finished states, in push order."""
    queue = await chancy.declare(Queue("q", executor=Chancy.Executor.Async))
    async for _ in chancy.push_many([Job(func="wjobs.async_noop", queue="q")] * count):
        pass
    async with chancy.db.connection() as conn:
        jobs = await worker.fetch_jobs(queue, conn, up_to=count)
    assert len(jobs) == count
    executor = AsyncExecutor(worker, queue)
    return [executor.new_state(job) for job in jobs]


def _batches(worker: Worker) -> list[int]:
    """The sizes of the batches `worker`'s batcher writes from now on."""
    sizes: list[int] = []

    def on_written(event: HubEvent) -> None:
        sizes.append(event.body["count"])

    worker.hub.on(BATCH_WRITTEN, on_written)
    return sizes


async def _states(chancy: Chancy, jobs: list[QueuedJob]) -> list[str]:
    rows = await fetch(chancy, "SELECT id::text, state FROM {jobs}")
    by_id = dict(rows)
    return [by_id[job.id] for job in jobs]


async def test_updates_arriving_during_a_write_go_in_the_next_batch(chancy) -> None:
    worker = Worker(chancy, **FAST)
    assert worker.send_outgoing_interval == 0
    first, *rest = await _claimed(chancy, worker, 4)
    sizes = _batches(worker)
    async with anyio.create_task_group() as tg:
        # Hold the first job's row so that the batcher's first write blocks on it.
        async with chancy.db.connection() as locker, locker.transaction():
            await locker.execute(
                chancy.tables.q("SELECT 1 FROM {jobs} WHERE id = %s FOR UPDATE"), (first.id,)
            )
            await tg.start(Batcher(worker).run)
            worker.queue_update_nowait(first)

            async def write_waits_on_the_lock() -> bool:
                rows = await fetch(
                    chancy,
                    "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'",
                )
                return bool(rows)

            await eventually(write_waits_on_the_lock)
            for job in rest:
                worker.queue_update_nowait(job)
            assert sizes == []
            assert len(worker.outgoing) == len(rest)
        # The lock is gone: the first write ends, and the rest go together in the next one.
        await eventually(lambda: sum(sizes) == 4)
        tg.cancel_scope.cancel()
    assert sizes == [1, 3]
    assert await _states(chancy, [first, *rest]) == ["succeeded"] * 4


async def test_interval_is_a_minimum_gap_that_a_full_batch_skips(chancy) -> None:
    worker = Worker(chancy, **FAST)
    worker.send_outgoing_interval = 30
    worker.outgoing.batch_size = 2
    jobs = await _claimed(chancy, worker, 3)
    sizes = _batches(worker)
    async with anyio.create_task_group() as tg:
        await tg.start(Batcher(worker).run)
        # The first update after a quiet spell is written at once, not after the interval.
        worker.queue_update_nowait(jobs[0])
        await eventually(lambda: sizes == [1], timeout=10)
        # The next one waits for the gap (or a full batch) ...
        worker.queue_update_nowait(jobs[1])
        await anyio.sleep(0.3)
        assert sizes == [1]
        assert len(worker.outgoing) == 1
        # ... and a full batch is written at once.
        worker.queue_update_nowait(jobs[2])
        await eventually(lambda: sizes == [1, 2], timeout=10)
        tg.cancel_scope.cancel()
    assert await _states(chancy, jobs) == ["succeeded"] * 3
