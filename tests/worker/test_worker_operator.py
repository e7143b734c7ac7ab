"""The operator's API against a running worker: a queue paused with a resume time resumes by
itself on time, and retried or moved jobs are picked up at once (their queue is notified)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import anyio
import pytest
import wjobs
from support import eventually

from chancy import Chancy, Job, JobFilter, Queue, QueuedJob

pytestmark = pytest.mark.anyio

ASYNC = Chancy.Executor.Async


@pytest.mark.parametrize("notifications", [True, False], ids=["notify", "poll"])
async def test_paused_queue_resumes_at_its_time(dsn, prefix, start_worker, notifications) -> None:
    async with Chancy(dsn, prefix=prefix, plugins=[], notifications=notifications) as app:
        await app.migrate()
        await app.declare(Queue("q", executor=ASYNC, polling_interval=0.2))
        # A long poll of the queues: only the resume time can bring the queue back in time.
        worker = await start_worker(app, queue_change_poll_interval=60)
        await eventually(lambda: "q" in worker.executors)
        await app.pause_queue("q", resume_at=datetime.now(UTC) + timedelta(seconds=60))
        if not notifications:
            # Without notices the pause itself is seen on the next (60 s) poll: cut it short.
            worker.watcher.wakeup.set()
        await eventually(lambda: "q" not in worker.executors, timeout=3)
        # A shorter pause replaces it; the worker learns the new time from the queue.changed
        # notice (or the nudge), then wakes at that time by itself.
        resume_in = 1.5
        await app.pause_queue("q", resume_at=timedelta(seconds=resume_in))
        if not notifications:
            worker.watcher.wakeup.set()
        paused_at = time.monotonic()
        ref = await app.push(Job(func="wjobs.async_record", queue="q", kwargs={"label": "r"}))
        await anyio.sleep(0.8)
        assert wjobs.RUNS["r"] == []
        job = await app.wait_for_job(ref, interval=0.1, timeout=10)
        assert job.state is QueuedJob.State.SUCCEEDED
        assert resume_in - 0.3 <= time.monotonic() - paused_at < resume_in + 2.5
        assert (await app.get_queue("q")).state is Queue.State.ACTIVE


async def test_retried_and_moved_jobs_run_at_once(chancy, start_worker) -> None:
    await chancy.declare(Queue("q", executor=ASYNC, polling_interval=30))
    await chancy.declare(Queue("other", executor=ASYNC, polling_interval=30))
    worker = await start_worker()
    await eventually(lambda: {"q", "other"} <= set(worker.executors))
    ref = await chancy.push(Job(func="wjobs.async_fail", queue="q", kwargs={"label": "f"}))
    failed = await chancy.wait_for_job(ref, timeout=10)
    assert failed.state is QueuedJob.State.FAILED
    assert len(failed.errors) == 1
    result = await chancy.retry_jobs(where=JobFilter(queue="q", state="failed"))
    assert result.done == [ref.identifier]
    # Woken by the "pushed" notice: well within the 30 s polling interval.
    again = await chancy.wait_for_job(ref, timeout=5)
    assert again.state is QueuedJob.State.FAILED
    assert len(again.errors) == 2
    assert again.attempts == 1

    await chancy.pause_queue("q")
    await eventually(lambda: "q" not in worker.executors)
    stuck = await chancy.push(Job(func="wjobs.async_record", queue="q", kwargs={"label": "m"}))
    await anyio.sleep(0.3)
    assert (await chancy.move_jobs([stuck], "other")).done == [stuck.identifier]
    moved = await chancy.wait_for_job(stuck, timeout=5)
    assert moved.state is QueuedJob.State.SUCCEEDED
    assert moved.queue == "other"
    [stats] = await chancy.queue_stats("other")
    assert stats.workers == (worker.worker_id,)
    assert stats.succeeded_last_minute == 1
