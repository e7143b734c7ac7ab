"""Retry backoff with a real worker: the gaps between attempts follow the backoff."""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import pytest
from plugin_helpers import eventually, job_row

from chancy import Chancy, Job, Queue
from chancy.plugins.retry import Retry
from chancy.worker import Worker

pytestmark = pytest.mark.anyio

# Jobs become due at their scheduled_at; the fetcher sees that within its 1 s poll. The lower
# bound (never before the backoff) is the promise; the upper one only catches "much later"
# and is loose, since a loaded 2-core machine can delay a poll by seconds.
POLL_SLACK = 5.0


def times(path: Path) -> list[float]:
    return [float(x) for x in path.read_text().split()] if path.exists() else []


async def test_backoff_gaps_between_attempts(make_app, tmp_path: Path) -> None:
    app: Chancy = await make_app(plugins=[Retry(base=0.5, factor=3, limit=10)])
    await app.declare(Queue("r", concurrency=2, executor=Chancy.Executor.Async))
    default_path, per_job_path = tmp_path / "default", tmp_path / "per_job"
    refs = [
        await app.push(
            Job(
                func="pjobs.fail_timed", queue="r", kwargs={"path": str(default_path)}
            ).with_max_attempts(3)
        ),
        await app.push(
            Job(func="pjobs.fail_timed", queue="r", kwargs={"path": str(per_job_path)})
            .with_max_attempts(2)
            .with_meta({"retry": {"base": 2.5}})
        ),
    ]
    with anyio.fail_after(40):
        async with anyio.create_task_group() as tg:
            worker = Worker(app, worker_id="retrier", heartbeat_poll_interval=1)
            await tg.start(worker.run)
            jobs = [await app.wait_for_job(ref, timeout=30) for ref in refs]
            tg.cancel_scope.cancel()
    for job, attempts in zip(jobs, (3, 2), strict=True):
        assert job is not None
        assert job.state == job.State.FAILED
        assert job.attempts == attempts
        assert len(job.errors) == attempts
    # Default settings: 0.5 s after the first failure, 1.5 s after the second.
    runs = times(default_path)
    assert len(runs) == 3
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    for gap, delay in zip(gaps, (0.5, 1.5), strict=True):
        assert delay - 0.05 <= gap <= delay + POLL_SLACK, gaps
    # The job's own base of 2.5 s wins over the plugin's.
    runs = times(per_job_path)
    assert len(runs) == 2
    assert 2.45 <= runs[1] - runs[0] <= 2.5 + POLL_SLACK


async def test_a_cancelled_job_is_not_retried(make_app) -> None:
    app: Chancy = await make_app(plugins=[Retry(base=0.1)])
    await app.declare(Queue("r", executor=Chancy.Executor.Async))
    ref = await app.push(Job(func="pjobs.sleep_forever", queue="r", max_attempts=5))
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            worker = Worker(app, worker_id="canceller", heartbeat_poll_interval=1)
            await tg.start(worker.run)

            async def running() -> bool:
                row = await job_row(app, ref.identifier)
                return row is not None and row["state"] == "running"

            await eventually(running, timeout=10)
            await app.cancel_job(ref)
            job = await app.wait_for_job(ref, timeout=15)
            assert job is not None
            assert job.state == job.State.FAILED
            assert job.attempts == 1
            await anyio.sleep(0.5)
            job = await app.get_job(ref)
            assert job is not None
            assert job.state == job.State.FAILED
            assert job.attempts == 1
            tg.cancel_scope.cancel()
