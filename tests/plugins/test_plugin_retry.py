"""Retry backoff: the delay formula, per-job settings, and the completion hook."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest

from chancy.errors import JobCancelled, RemoteJobError
from chancy.job import QueuedJob
from chancy.plugins.retry import Backoff, Retry

pytestmark = pytest.mark.anyio


def make_job(state: QueuedJob.State, attempts: int = 1, meta: dict | None = None) -> QueuedJob:
    return QueuedJob(
        id="0192f0a0-0000-7000-8000-000000000000",
        func="pjobs.noop",
        max_attempts=10,
        attempts=attempts,
        state=state,
        meta=meta or {},
    )


def test_exponential_delays_capped_by_the_limit() -> None:
    backoff = Backoff.make(base=2, factor=3, limit=100)
    assert [backoff.delay(n) for n in range(1, 6)] == [2, 6, 18, 54, 100]
    assert backoff.delay(10_000) == 100  # no overflow for huge attempt numbers


def test_jitter_stays_in_its_range() -> None:
    rng = random.Random(7)
    backoff = Backoff.make(base=1, factor=1, limit=10, jitter=(2, 3))
    delays = [backoff.delay(1, rng) for _ in range(200)]
    assert all(3 <= d <= 4 for d in delays)
    assert max(delays) - min(delays) > 0.5
    assert all(1 <= Backoff.make(jitter=2).delay(1, rng) <= 3 for _ in range(50))


def test_per_job_settings_override_the_defaults() -> None:
    backoff = Backoff.make(base=1, factor=2, limit=300).with_overrides({"base": 10, "limit": 15})
    assert (backoff.delay(1), backoff.delay(2)) == (10, 15)
    with pytest.raises(ValueError, match="unknown settings"):
        Backoff.make().with_overrides({"bsae": 1})
    with pytest.raises(ValueError, match="expected a number"):
        Backoff.make().with_overrides({"base": "soon"})


async def test_hook_delays_retrying_jobs_only() -> None:
    plugin = Retry(base=5, factor=2, limit=60)
    before = datetime.now(UTC)
    retrying = await plugin.on_job_completed(
        make_job(QueuedJob.State.RETRYING, attempts=3), None, error=RuntimeError("x")
    )
    assert retrying.state == QueuedJob.State.RETRYING
    assert timedelta(seconds=19.9) < retrying.scheduled_at - before < timedelta(seconds=21)
    per_job = await plugin.on_job_completed(
        make_job(QueuedJob.State.RETRYING, meta={"retry": {"base": 100}}), None, error=None
    )
    assert timedelta(seconds=59) < per_job.scheduled_at - before < timedelta(seconds=61)
    bad_meta = await plugin.on_job_completed(
        make_job(QueuedJob.State.RETRYING, meta={"retry": "often"}), None, error=None
    )
    assert timedelta(seconds=4) < bad_meta.scheduled_at - before < timedelta(seconds=6)
    for state in (QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED):
        job = make_job(state)
        assert await plugin.on_job_completed(job, None, error=None) is job


async def test_cancelled_jobs_are_never_retried() -> None:
    plugin = Retry()
    job = make_job(QueuedJob.State.RETRYING)
    out = await plugin.on_job_completed(job, None, error=asyncio.CancelledError())
    assert out.state == QueuedJob.State.FAILED
    assert out.completed_at is not None

    try:
        try:
            raise JobCancelled("cancelled by request")
        except JobCancelled as exc:
            raise RuntimeError("cleanup failed") from exc
    except RuntimeError as chained:
        out = await plugin.on_job_completed(job, None, error=chained)
    assert out.state == QueuedJob.State.FAILED
    flagged = dataclasses.replace(job, meta={"cancelled": True})
    out = await plugin.on_job_completed(flagged, None, error=None)
    assert out.state == QueuedJob.State.FAILED
    # A cancel that crossed from a child process as data is a cancel too...
    remote = RemoteJobError("JobCancelled", "job cancelled while running")
    out = await plugin.on_job_completed(job, None, error=remote)
    assert out.state == QueuedJob.State.FAILED

    # ...but a job's own exception that merely shares the name is an ordinary failure.
    class UserJobCancelled(Exception):
        pass

    UserJobCancelled.__name__ = "JobCancelled"
    out = await plugin.on_job_completed(job, None, error=UserJobCancelled("mine"))
    assert out.state == QueuedJob.State.RETRYING
