"""Metric history: points per queue from the jobs table, rolled up, bounded, read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chancy.plugins.leadership import Leadership
from chancy.plugins.metrics import Metrics, prune, record

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 3, 10, 0, 5, tzinfo=UTC)  # 5 s into a 10 s window


async def _finished(app, queue: str, state: str, completed: datetime, run: float, wait: float):
    async with app.db.connection() as conn:
        await conn.execute(
            app.tables.q(
                "INSERT INTO {jobs} (id, queue, func, state, attempts, scheduled_at, started_at,"
                " completed_at) VALUES (gen_random_uuid(), %s, 'x.y', %s, 1,"
                " %s - make_interval(secs => %s + %s), %s - make_interval(secs => %s), %s)"
            ),
            (queue, state, completed, run, wait, completed, run, completed),
        )


async def test_points_roll_up_and_read_back(make_app) -> None:
    app = await make_app(plugins=[Leadership(poll_interval=1, timeout=5), Metrics()])
    window = NOW.replace(second=0)  # 10:00:00-10:00:10 is the last complete... of 10:00:15
    for i, (state, run) in enumerate([("succeeded", 1.0), ("succeeded", 3.0), ("failed", 2.0)]):
        await _finished(app, "mail", state, window + timedelta(seconds=1 + i), run, 0.5)
    await _finished(app, "other", "succeeded", window + timedelta(seconds=2), 10.0, 4.0)

    last = await record(app, NOW + timedelta(seconds=10))  # at 10:00:15: window 10:00:00-10
    assert last == window + timedelta(seconds=10)
    points = await app.metrics(resolution=10, since=window - timedelta(minutes=1))
    mail = next(p for p in points if p.queue == "mail")
    assert (mail.succeeded, mail.failed, mail.bucket) == (2, 1, window)
    assert mail.run_p50 == pytest.approx(2.0)
    assert mail.run_p95 == pytest.approx(2.9)
    assert mail.wait_p50 == pytest.approx(0.5)
    other = await app.metrics(queue="other", resolution=10, since=window - timedelta(minutes=1))
    assert [(p.succeeded, p.run_p50) for p in other] == [(1, 10.0)]

    # At 10:01:05 the minute 10:00 is complete: its point sums the 10 s points of it.
    await record(app, NOW + timedelta(minutes=1), after=last)
    minute = await app.metrics(queue="mail", resolution=60, since=window - timedelta(hours=1))
    assert [(p.bucket, p.succeeded, p.failed) for p in minute] == [(window, 2, 1)]
    assert minute[0].run_p95 == pytest.approx(2.9)  # the largest finer p95

    # Bounded: points older than their resolution's retention go.
    removed = await prune(app, {10: 60, 60: 3600, 3600: 86400}, now=NOW + timedelta(hours=2))
    assert removed >= 3  # both 10 s points, and the minute point
    assert await app.metrics(resolution=10, since=window - timedelta(minutes=1)) == []

    with pytest.raises(ValueError, match="resolution"):
        await app.metrics(resolution=5)


async def test_the_leader_records_points(make_app) -> None:
    from support import FAST, eventually

    from chancy.worker import Worker

    metrics = Metrics()
    app = await make_app(plugins=[Leadership(poll_interval=1, timeout=5), metrics])
    async with Worker(app, **FAST) as worker:
        await eventually(worker.is_leader.is_set, timeout=20)
        await eventually(lambda: metrics.passes >= 1, timeout=20)
