"""Trigger against a real table: a row's INSERT/UPDATE/DELETE pushes the registered job with
the row's key, in the change's transaction; unregistering and migrating down remove it."""

from __future__ import annotations

import pytest
from psycopg import sql
from support import FAST, fetch

from chancy import Chancy, Job, Queue, QueuedJob
from chancy.plugins.trigger import Trigger, TriggerError
from chancy.worker import Worker

pytestmark = pytest.mark.anyio


async def users_table(app: Chancy) -> sql.Identifier:
    table = sql.Identifier(app.prefix + "users")
    async with app.db.connection() as conn:
        await conn.execute(
            sql.SQL("CREATE TABLE {} (user_id integer PRIMARY KEY, email text)").format(table)
        )
    return table


async def jobs(app: Chancy) -> list[tuple]:
    return await fetch(
        app, "SELECT kwargs, meta->'trigger'->>'operation', func FROM {jobs} ORDER BY id"
    )


async def test_row_changes_push_jobs_with_the_rows_key(make_app) -> None:
    app: Chancy = await make_app(plugins=[Trigger()])
    await app.declare(Queue("events", concurrency=2, executor=Chancy.Executor.Threaded))
    table = await users_table(app)
    trigger_id = await Trigger.register_trigger(
        app,
        table_name=app.prefix + "users",
        operations=["insert", "UPDATE"],
        job_template=Job(func="wfjobs.on_row", queue="events", kwargs={"x": "ok"}),
        key_column="user_id",
    )
    async with app.db.connection() as conn:
        await conn.execute(sql.SQL("INSERT INTO {} VALUES (1, 'a@x'), (2, 'b@x')").format(table))
        await conn.execute(sql.SQL("UPDATE {} SET email = 'c@x' WHERE user_id = 2").format(table))
        await conn.execute(sql.SQL("DELETE FROM {} WHERE user_id = 1").format(table))
        # A change rolled back pushes nothing.
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await conn.execute(sql.SQL("INSERT INTO {} VALUES (3, 'd@x')").format(table))
                raise RuntimeError("roll back")
    got = sorted((op, kwargs["user_id"], kwargs["x"]) for kwargs, op, _ in await jobs(app))
    assert got == [("INSERT", 1, "ok"), ("INSERT", 2, "ok"), ("UPDATE", 2, "ok")]
    configs = await Trigger.get_triggers(app)
    assert [(c.id, c.operations, c.key_argument) for c in configs] == [
        (trigger_id, ["INSERT", "UPDATE"], "user_id")
    ]
    # The jobs run like any other (their id is a UUIDv7 made in the database).
    refs = [row[0] for row in await fetch(app, "SELECT id::text FROM {jobs} ORDER BY id")]
    assert all(ref[14] == "7" for ref in refs)
    async with Worker(app, **FAST):
        done = [await app.wait_for_job(ref, timeout=30) for ref in refs]
    assert all(job is not None and job.state == QueuedJob.State.SUCCEEDED for job in done)
    assert sorted(job.result for job in done if job) == [["ok", 1], ["ok", 2], ["ok", 2]]
    assert done[0] is not None
    assert done[0].meta["trigger"]["table_name"] == app.prefix + "users"

    assert await Trigger.unregister_trigger(app, trigger_id) is True
    assert await Trigger.unregister_trigger(app, trigger_id) is False
    async with app.db.connection() as conn:
        await conn.execute(sql.SQL("INSERT INTO {} VALUES (9, 'z@x')").format(table))
    assert len(await jobs(app)) == 3


async def test_delete_key_a_unique_key_and_migrating_down(make_app) -> None:
    app: Chancy = await make_app(plugins=[Trigger()])
    table = await users_table(app)
    await Trigger.register_trigger(
        app,
        table_name=app.prefix + "users",
        operations=["DELETE"],
        job_template=Job(func="wfjobs.value", queue="events", unique_key="users-gone"),
        key_column="user_id",
        key_argument="gone",
    )
    async with app.db.connection() as conn:
        await conn.execute(sql.SQL("INSERT INTO {} VALUES (1, 'a'), (2, 'b')").format(table))
        await conn.execute(sql.SQL("DELETE FROM {}").format(table))
    # Two rows deleted, one job: the unique key holds while the first is unfinished.
    assert [row[0] for row in await jobs(app)] == [{"gone": 1}]
    await app.migrate(to_version=0)
    triggers = await fetch(
        app,
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(%s)",
        (app.prefix + "users",),
    )
    assert triggers == [(0,)]
    async with app.db.connection() as conn:
        await conn.execute(sql.SQL("INSERT INTO {} VALUES (5, 'e')").format(table))
        await conn.execute(sql.SQL("DROP TABLE {}").format(table))


async def test_bad_registrations_are_refused(make_app) -> None:
    app: Chancy = await make_app(plugins=[Trigger()])
    await users_table(app)
    job = Job(func="wfjobs.value")
    with pytest.raises(TriggerError, match="no table public.nope"):
        await Trigger.register_trigger(
            app, table_name="nope", operations=["INSERT"], job_template=job
        )
    with pytest.raises(TriggerError, match="has no column 'id'"):
        await Trigger.register_trigger(
            app, table_name=app.prefix + "users", operations=["INSERT"], job_template=job
        )
    with pytest.raises(TriggerError, match="operations"):
        await Trigger.register_trigger(
            app, table_name=app.prefix + "users", operations=["TRUNCATE"], job_template=job
        )
    with pytest.raises(TriggerError, match="job_template"):
        await Trigger.register_trigger(
            app, table_name=app.prefix + "users", operations=["INSERT"], job_template="x"
        )
    assert await Trigger.get_triggers(app) == []
