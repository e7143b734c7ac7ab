"""Reprioritize against a real database: old waiting jobs rise, running and fresh ones do not,
in bounded batches, each job once per pass, up to the rule's maximum; and on a leader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support import FAST, eventually, fetch

from chancy import Chancy, Job, Queue
from chancy.plugins.leadership import Leadership
from chancy.plugins.reprioritize import Reprioritize
from chancy.worker import Worker

pytestmark = pytest.mark.anyio

OLD = datetime.now(UTC) - timedelta(hours=1)


async def push(app: Chancy, queue: str, *, old: bool, priority: int = 0) -> str:
    job = Job(func="wfjobs.value", queue=queue, priority=priority)
    ref = await app.push(job.with_scheduled_at(OLD) if old else job)
    return ref.identifier


async def priorities(app: Chancy) -> dict[str, int]:
    return dict(await fetch(app, "SELECT id::text, priority FROM {jobs}"))


async def test_old_waiting_jobs_rise_once_per_pass_in_batches(make_app) -> None:
    plugin = Reprioritize(
        rules=[
            Reprioritize.Rule(queue="mail", older_than=600, increase=2, maximum=5),
            Reprioritize.Rule(queue="other", older_than=600),
        ],
        batch_size=2,
    )
    app: Chancy = await make_app(plugins=[Leadership(), plugin])
    for name in ("mail", "other", "untouched"):
        await app.declare(Queue(name, state=Queue.State.PAUSED))
    old = [await push(app, "mail", old=True) for _ in range(5)]
    capped = await push(app, "mail", old=True, priority=4)
    fresh = await push(app, "mail", old=False)
    running = await push(app, "mail", old=True)
    other = await push(app, "other", old=True)
    untouched = await push(app, "untouched", old=True)
    async with app.db.connection() as conn:
        await conn.execute(
            app.tables.q("UPDATE {jobs} SET state = 'running' WHERE id = %s"), (running,)
        )
    assert await plugin.reprioritize(app) == 7
    now = await priorities(app)
    assert [now[i] for i in old] == [2] * 5  # each once, though batches were of 2
    assert now[capped] == 5
    assert (now[fresh], now[running], now[other], now[untouched]) == (0, 0, 1, 0)
    assert await plugin.reprioritize(app) == 6
    now = await priorities(app)
    assert [now[i] for i in old] == [4] * 5
    assert now[capped] == 5  # at the maximum: left alone
    assert now[other] == 2
    assert await plugin.reprioritize(app) == 6
    assert [(await priorities(app))[i] for i in old] == [5] * 5


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rules"):
        Reprioritize(rules=[])
    with pytest.raises(ValueError, match="older_than"):
        Reprioritize.Rule(older_than=-1)
    with pytest.raises(ValueError, match="increase"):
        Reprioritize.Rule(older_than=1, increase=0)
    with pytest.raises(ValueError, match="batch_size"):
        Reprioritize(rules=[Reprioritize.Rule(older_than=1)], batch_size=0)
    plugin = Reprioritize(rules=[Reprioritize.Rule(older_than=1)], priority_increase=3)
    assert plugin.rules[0].increase == 3


async def test_the_leader_raises_priorities_on_its_own(make_app) -> None:
    plugin = Reprioritize(rules=[Reprioritize.Rule(older_than=600)], check_interval=0.2)
    app: Chancy = await make_app(plugins=[Leadership(poll_interval=0.2, timeout=2), plugin])
    await app.declare(Queue("paused", state=Queue.State.PAUSED))
    job_id = await push(app, "paused", old=True)
    async with Worker(app, **FAST):
        await eventually(lambda: _priority_at_least(app, job_id, 2), timeout=20)


async def _priority_at_least(app: Chancy, job_id: str, value: int) -> bool:
    return (await priorities(app))[job_id] >= value
