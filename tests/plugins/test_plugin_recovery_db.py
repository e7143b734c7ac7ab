"""Recovery's rescue pass against a real database: who is dead, what is rescued, what is not."""

from __future__ import annotations

import anyio
import pytest
from plugin_helpers import add_job, add_worker, job_row

from chancy.plugins.leadership import Leadership
from chancy.plugins.recovery import Recovery, rescue_jobs
from chancy.plugins.retry import Retry

pytestmark = pytest.mark.anyio


async def test_rescues_only_jobs_of_dead_incarnations(make_app) -> None:
    app = await make_app()
    await add_worker(app, "dead", "d1", alive=False)
    await add_worker(app, "alive", "a1", alive=True)
    await add_worker(app, "restarted", "new", alive=True)

    dead = await add_job(app, state="running", taken_by="dead:d1", attempts=1)
    alive = await add_job(app, state="running", taken_by="alive:a1", attempts=1)
    old_incarnation = await add_job(app, state="running", taken_by="restarted:old", attempts=1)
    pruned_worker = await add_job(app, state="running", taken_by="gone:g1", attempts=2)
    out_of_attempts = await add_job(
        app, state="running", taken_by="dead:d1", attempts=3, max_attempts=3
    )
    cancelled = await add_job(app, state="running", taken_by="dead:d1", cancel_requested=True)
    finished = await add_job(app, state="succeeded", taken_by="dead:d1", completed_ago=1)
    just_claimed = await add_job(app, state="running", taken_by="gone:g2", started_ago=0)

    plugin = Recovery(grace=5)
    assert await plugin.rescue(app) == 5

    for job_id, attempts in ((dead, 1), (old_incarnation, 1), (pruned_worker, 2)):
        row = await job_row(app, job_id)
        assert row is not None
        assert (row["state"], row["taken_by"], row["attempts"]) == ("retrying", None, attempts)
        assert row["completed_at"] is None
        assert row["errors"][-1]["attempt"] == attempts
        assert "stopped heartbeating" in row["errors"][-1]["traceback"]
    for job_id in (out_of_attempts, cancelled):
        row = await job_row(app, job_id)
        assert row is not None
        assert row["state"] == "failed"
        assert row["completed_at"] is not None
    for job_id, state in ((alive, "running"), (finished, "succeeded"), (just_claimed, "running")):
        row = await job_row(app, job_id)
        assert row is not None
        assert row["state"] == state
        assert row["errors"] == []

    # A second pass finds nothing more.
    assert await plugin.rescue(app) == 0


async def test_rescue_works_in_batches(make_app) -> None:
    app = await make_app()
    ids = [await add_job(app, state="running", taken_by="gone:1", attempts=1) for _ in range(5)]
    plugin = Recovery(grace=0, batch_size=2)
    assert await plugin.rescue(app) == 5
    for job_id in ids:
        row = await job_row(app, job_id)
        assert row is not None
        assert row["state"] == "retrying"


async def test_a_job_completing_while_recovery_runs_is_not_rescued(make_app) -> None:
    app = await make_app()
    await add_worker(app, "slow", "s1", alive=False)
    job_id = await add_job(app, state="running", taken_by="slow:s1", attempts=1)
    completing = anyio.Event()
    release = anyio.Event()

    async def late_worker_completes() -> None:
        # The worker, presumed dead, writes its completion (guarded by state and holder);
        # its transaction is still open while the leader's rescue pass runs.
        async with app.db.connection() as conn, conn.transaction():
            await conn.execute(
                app.tables.q(
                    "UPDATE {jobs} SET state = 'succeeded', completed_at = now(), taken_by = NULL"
                    " WHERE id = %s AND state = 'running' AND taken_by = %s"
                ),
                (job_id, "slow:s1"),
            )
            completing.set()
            await release.wait()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(late_worker_completes)
            await completing.wait()
            assert await rescue_jobs(app, grace=0) == []
            release.set()
        assert await rescue_jobs(app, grace=0) == []
    row = await job_row(app, job_id)
    assert row is not None
    assert row["state"] == "succeeded"
    assert row["errors"] == []


async def test_a_late_completion_after_a_rescue_changes_nothing(make_app) -> None:
    app = await make_app()
    job_id = await add_job(app, state="running", taken_by="gone:g1", attempts=1)
    assert len(await rescue_jobs(app, grace=0)) == 1
    async with app.db.connection() as conn:
        rows = await conn.fetchall(
            app.tables.q(
                "UPDATE {jobs} SET state = 'succeeded' WHERE id = %s AND state = 'running'"
                " AND taken_by = %s RETURNING id"
            ),
            (job_id, "gone:g1"),
        )
    assert rows == []
    row = await job_row(app, job_id)
    assert row is not None
    assert row["state"] == "retrying"


def test_recovery_depends_on_leadership() -> None:
    assert Recovery.dependencies == (Leadership.identifier,)


async def test_concurrent_passes_rescue_each_job_once(make_app) -> None:
    app = await make_app(max_connection_pool_size=6)
    ids = [await add_job(app, state="running", taken_by="gone:1", attempts=1) for _ in range(30)]
    counts: list[int] = []

    async def one_pass(into: list[int]) -> None:
        into.append(await Recovery(grace=0, batch_size=4).rescue(app))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(one_pass, counts)
    assert sum(counts) == len(ids)
    for job_id in ids:
        row = await job_row(app, job_id)
        assert row is not None
        assert row["state"] == "retrying"
        assert len(row["errors"]) == 1


async def test_rescued_jobs_follow_the_retry_backoff(make_app) -> None:
    """With a Retry plugin, the lost run counts as a failed attempt and waits its backoff
    (the job's own meta["retry"] included). Without one it runs again at once (above)."""
    app = await make_app(plugins=[Retry(base=60, factor=2, limit=3600)])
    first = await add_job(app, state="running", taken_by="gone:1", attempts=1)
    third = await add_job(app, state="running", taken_by="gone:1", attempts=3, max_attempts=5)
    assert sorted(state for _, _, state in await rescue_jobs(app, grace=0)) == [
        "retrying",
        "retrying",
    ]
    async with app.db.connection() as conn:
        rows = dict(
            await conn.fetchall(
                app.tables.q(
                    "SELECT id::text, extract(epoch FROM scheduled_at - now())::float8"
                    " FROM {jobs} WHERE id = ANY(%s::uuid[])"
                ),
                ([first, third],),
            )
        )
    assert 55 < rows[first] <= 60  # base * factor**0
    assert 235 < rows[third] <= 240  # base * factor**2
