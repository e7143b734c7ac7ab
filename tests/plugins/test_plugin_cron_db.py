"""Cron schedules in the database: API, time zones, and firing once per tick."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest
from plugin_helpers import count_jobs

from chancy import Job, Queue
from chancy.plugins.cron import (
    Cron,
    fire_due,
    get_schedules,
    next_tick,
    schedule,
    unschedule,
)

pytestmark = pytest.mark.anyio


def test_next_tick_is_utc_unless_a_timezone_is_given() -> None:
    after = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
    assert next_tick("0 9 * * *", None, after) == datetime(2024, 1, 16, 9, 0, tzinfo=UTC)
    # 09:00 in New York is 14:00 UTC in winter and 13:00 UTC in summer.
    assert next_tick("0 9 * * *", "America/New_York", after) == datetime(
        2024, 1, 15, 14, 0, tzinfo=UTC
    )
    summer = datetime(2024, 7, 15, 12, 0, tzinfo=UTC)
    assert next_tick("0 9 * * *", "America/New_York", summer) == datetime(
        2024, 7, 15, 13, 0, tzinfo=UTC
    )
    assert next_tick("*/5 * * * *", None, after) == datetime(2024, 1, 15, 12, 5, tzinfo=UTC)
    # A sixth field counts seconds.
    assert next_tick("* * * * * */10", None, after) == datetime(2024, 1, 15, 12, 0, 10, tzinfo=UTC)


async def test_schedule_unschedule_get_schedules(make_app) -> None:
    app = await make_app(plugins=[Cron()])
    job = Job(func="pjobs.noop", queue="default", kwargs={"a": 1})
    with pytest.raises(ValueError, match="not a valid cron expression"):
        await schedule(app, "every tuesday", job)
    with pytest.raises(ValueError, match="unknown time zone"):
        await schedule(app, "* * * * *", job, timezone="Mars/Olympus")
    first = await schedule(app, "*/5 * * * *", job, name="five")
    assert first.next_run.minute % 5 == 0
    assert first.next_run > datetime.now(UTC)
    await schedule(app, "0 9 * * *", job, timezone="Europe/Paris")
    schedules = await get_schedules(app)
    assert [s.name for s in schedules] == ["five", "pjobs.noop"]
    assert schedules[1].timezone == "Europe/Paris"
    assert schedules[0].job.kwargs == {"a": 1}
    assert schedules[0].cron == "*/5 * * * *"
    # Scheduling under the same name replaces the schedule.
    await schedule(app, "0 * * * *", job, name="five")
    assert (await get_schedules(app))[0].cron == "0 * * * *"
    assert await unschedule(app, "five")
    assert not await unschedule(app, "five")
    assert [s.name for s in await get_schedules(app)] == ["pjobs.noop"]


async def make_due(app, name: str) -> None:
    async with app.db.connection() as conn:
        await conn.execute(
            app.tables.q(
                "UPDATE {s} SET next_run = now() - interval '1 second' WHERE name = %s",
                s=app.tables("cron_schedules"),
            ),
            (name,),
        )


async def test_a_due_schedule_fires_once_across_concurrent_workers(make_app) -> None:
    app = await make_app(plugins=[Cron()], max_connection_pool_size=10)
    await app.declare(Queue("default"))
    await schedule(app, "0 0 1 1 *", Job(func="pjobs.noop"), name="yearly")
    for round_ in range(3):
        await make_due(app, "yearly")
        fired: list = []

        async def fire(into: list) -> None:
            got, _ = await fire_due(app)
            into.extend(got)

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(fire, fired)
        assert len(fired) == 1
        assert await count_jobs(app) == round_ + 1
        # Finishing the job at once must not let the same tick fire again.
        async with app.db.connection() as conn:
            await conn.execute(app.tables.q("UPDATE {jobs} SET state = 'succeeded'"))
        got, wait = await fire_due(app)
        assert got == []
        assert wait > 3600
    async with app.db.connection() as conn:
        keys = await conn.fetchall(app.tables.q("SELECT unique_key FROM {jobs}"))
    assert len({k for (k,) in keys}) == 3
    assert all(k.startswith("cron:yearly:") for (k,) in keys)
    (schedule_row,) = await get_schedules(app)
    assert schedule_row.last_run is not None
    assert schedule_row.next_run.month == 1


async def test_an_undeclared_queue_does_not_block_the_schedule(make_app) -> None:
    app = await make_app(plugins=[Cron()])
    await schedule(app, "0 0 1 1 *", Job(func="pjobs.noop", queue="nowhere"), name="lost")
    await make_due(app, "lost")
    fired, _ = await fire_due(app)
    # Pushing to an undeclared queue is accepted: the job waits for the queue to be declared.
    assert [name for name, *_ in fired] == ["lost"]
    assert await app.get_undeclared_queues() == {"nowhere": 1}
    (row,) = await get_schedules(app)
    assert row.next_run > datetime.now(UTC)


async def test_a_broken_schedule_is_postponed_not_retried_in_a_loop(make_app) -> None:
    app = await make_app(plugins=[Cron()])
    await app.declare(Queue("default"))
    await schedule(app, "0 0 1 1 *", Job(func="pjobs.noop"), name="broken")
    async with app.db.connection() as conn:
        await conn.execute(
            app.tables.q(
                "UPDATE {s} SET cron = 'not a cron', next_run = now() - interval '1 second'",
                s=app.tables("cron_schedules"),
            )
        )
    fired, wait = await fire_due(app)
    assert fired == []
    assert wait > 3000
    assert await count_jobs(app) == 0
