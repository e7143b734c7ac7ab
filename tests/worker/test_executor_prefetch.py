"""The adaptive prefetch of the base Executor: opt-in, sized by the recent run times."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest
from support import FAST

from chancy import Chancy, Queue, QueuedJob
from chancy.executors.asyncex import AsyncExecutor
from chancy.executors.base import Executor
from chancy.executors.thread import ThreadedExecutor
from chancy.worker import Worker

pytestmark = pytest.mark.anyio


class Plain(Executor):
    """An executor that runs nothing: only its slot arithmetic is tested here."""

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED):
        task_status.started()

    async def start_job(self, job: QueuedJob) -> None:
        pass

    async def cancel(self, job_id: str) -> None:
        pass


class Ahead(Plain):
    adaptive_prefetch = True


def _fill(executor: Executor, count: int) -> None:
    executor.running = dict.fromkeys(map(str, range(count)))  # type: ignore[arg-type]


async def test_prefetch_is_opt_in_and_sized_by_run_times(chancy: Chancy) -> None:
    worker = Worker(chancy, **FAST)
    queue = Queue("q", concurrency=4)
    plain, ahead = Plain(worker, queue), Ahead(worker, queue)
    for executor in (plain, ahead):
        assert executor.prefetch() == 0
        assert executor.free_slots() == 4
        executor.record_duration(0.001)
    # Without the opt-in: the free slots only, however short the jobs.
    assert plain.prefetch() == 0
    assert plain.free_slots() == 4
    _fill(plain, 3)
    assert plain.free_slots() == 1
    # With it: 4 slots finish 80 jobs of 1 ms during a 20 ms claim, capped at 4 x 4 = 16.
    assert ahead.prefetch() == 16
    assert ahead.free_slots() == 20
    _fill(ahead, 5)
    assert ahead.free_slots() == 15
    _fill(ahead, 11)  # the prefetched jobs keep the slots busy: wait for half the room
    assert ahead.free_slots() == 0
    # Jobs slower than a claim get no prefetch.
    for _ in range(100):
        ahead.record_duration(1.0)
    _fill(ahead, 3)
    assert ahead.prefetch() == 0
    assert ahead.free_slots() == 1


async def test_in_process_executors_use_the_prefetch(chancy: Chancy) -> None:
    assert AsyncExecutor.adaptive_prefetch
    assert ThreadedExecutor.adaptive_prefetch
    assert not Executor.adaptive_prefetch
    executor = AsyncExecutor(Worker(chancy, **FAST), Queue("q", concurrency=2))
    executor.record_duration(0.0001)
    assert executor.prefetch() == 8
    assert executor.free_slots() == 10
