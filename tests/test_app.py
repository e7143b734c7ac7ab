"""The Chancy client against a real PostgreSQL, on asyncio and trio."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone

import anyio
import jobs
import pytest

from chancy import Chancy, Job, Limit, Queue, QueuedJob, Reference
from chancy.errors import InvalidJobError, UnknownQueueError

pytestmark = pytest.mark.anyio


async def rows(chancy: Chancy, query: str, *params: object) -> list[tuple]:
    async with chancy.db.connection() as conn:
        return await conn.fetchall(chancy.tables.q(query), params or None)


async def test_migrate_up_down_up(chancy: Chancy) -> None:
    assert await chancy.is_up_to_date()
    await chancy.migrate(to_version=1)
    assert not await chancy.is_up_to_date()
    assert (await rows(chancy, "SELECT to_regclass(%s) IS NULL", chancy.prefix + "workers")) == [
        (True,)
    ]
    await chancy.migrate(to_version=0)
    assert (await rows(chancy, "SELECT to_regclass(%s) IS NULL", chancy.prefix + "jobs")) == [
        (True,)
    ]
    await chancy.migrate()
    assert await chancy.is_up_to_date()
    assert (await chancy.schema_versions())["core"] == (6, 6)
    with pytest.raises(ValueError, match="no migration version 7"):
        await chancy.migrate(to_version=7)


async def test_declare_get_upsert_delete(chancy: Chancy) -> None:
    declared = await chancy.declare(Queue("default", concurrency=3, tags={"a=.*"}))
    assert declared == Queue("default", concurrency=3, tags={"a=.*"})
    # Without upsert an existing queue is left as it is.
    again = await chancy.declare(Queue("default", concurrency=9))
    assert again.concurrency == 3
    updated = await chancy.declare(
        Queue("default", concurrency=9, rate_limit=5, rate_limit_window=10), upsert=True
    )
    assert (updated.concurrency, updated.rate_limit, updated.rate_limit_window) == (9, 5, 10)
    assert await chancy.get_queue("default") == updated
    await chancy.declare(Queue("b", executor=Chancy.Executor.Async, polling_interval=0.5))
    assert [q.name for q in await chancy.get_all_queues()] == ["b", "default"]
    assert (await chancy.get_queue("b")).polling_interval == 0.5
    paused = await chancy.set_queue_state("b", Queue.State.PAUSED)
    assert paused.state is Queue.State.PAUSED
    with pytest.raises(UnknownQueueError, match="nope"):
        await chancy.get_queue("nope")
    with pytest.raises(UnknownQueueError):
        await chancy.delete_queue("nope")


async def test_delete_queue_purges_or_keeps_jobs(chancy: Chancy) -> None:
    for name in ("a", "b"):
        await chancy.declare(Queue(name))
        await chancy.push(Job.from_func(jobs.noop, queue=name))
    await chancy.delete_queue("a")
    await chancy.delete_queue("b", purge_jobs=False)
    assert await rows(chancy, "SELECT queue FROM {jobs} ORDER BY queue") == [("b",)]
    assert await chancy.get_all_queues() == []


async def test_push_stores_every_field(chancy: Chancy) -> None:
    await chancy.declare(Queue("default"))
    when = datetime.now(UTC) + timedelta(hours=1)
    job = Job.from_func(
        jobs.add,
        kwargs={"a": 1, "b": 2},
        priority=7,
        max_attempts=3,
        scheduled_at=when,
        limits=[Limit(Limit.Type.MEMORY, 1 << 20), Limit(Limit.Type.TIME, 2)],
        unique_key="once",
        meta={"source": "test"},
    )
    ref = await chancy.push(job)
    assert isinstance(ref, Reference)
    stored = await chancy.get_job(ref)
    assert isinstance(stored, QueuedJob)
    assert stored.id == ref.identifier
    assert (stored.func, stored.queue, stored.kwargs) == ("jobs.add", "default", {"a": 1, "b": 2})
    assert (stored.priority, stored.max_attempts, stored.unique_key) == (7, 3, "once")
    assert stored.scheduled_at == when
    assert stored.limits == job.limits
    assert stored.meta == {"source": "test"}
    assert (stored.state, stored.attempts, stored.errors) == (QueuedJob.State.PENDING, 0, [])
    assert stored.started_at is None
    assert stored.completed_at is None
    # An @job function can be pushed as it is.
    await chancy.declare(Queue("other"))
    ref2 = await chancy.push(jobs.decorated.job.with_queue("other"))
    assert (await chancy.get_job(ref2)).priority == 5
    assert await chancy.get_job(Reference("00000000-0000-7000-8000-000000000000")) is None


async def test_scheduled_at_round_trips_to_the_microsecond_at_any_date(chancy: Chancy) -> None:
    # scheduled_at travels as integer microseconds since the epoch: exact before 1970, past
    # 2106 (where a float of seconds loses microseconds), in any time zone.
    await chancy.declare(Queue("default"))
    plus9 = timezone(timedelta(hours=9, minutes=30))
    moments = [
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1900, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 12, 3, 12, 0, 0, 999_999, tzinfo=UTC),
        datetime(2200, 6, 1, 8, 30, 15, 123_457, tzinfo=plus9),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ]
    refs = [
        ref
        async for batch in chancy.push_many(
            [Job.from_func(jobs.add, scheduled_at=moment) for moment in moments]
        )
        for ref in batch
    ]
    stored = await chancy.get_jobs(refs)
    assert [job.scheduled_at for job in stored] == moments
    # The sync twin goes through the same plan.
    ref = await anyio.to_thread.run_sync(
        chancy.sync_push, Job.from_func(jobs.add, scheduled_at=moments[3])
    )
    assert (await chancy.get_job(ref)).scheduled_at == moments[3]


async def test_push_decorated_function_directly(chancy: Chancy) -> None:
    await chancy.declare(Queue("default"))
    ref = await chancy.push(jobs.decorated)
    assert (await chancy.get_job(ref)).func == "jobs.decorated"


async def test_push_many_batches_and_order(chancy: Chancy) -> None:
    await chancy.declare(Queue("default"))
    batches = [
        refs
        async for refs in chancy.push_many(
            [Job.from_func(jobs.add, kwargs={"a": i, "b": 0}) for i in range(25)], batch_size=10
        )
    ]
    assert [len(b) for b in batches] == [10, 10, 5]
    ids = [r.identifier for b in batches for r in b]
    stored = await rows(chancy, "SELECT id::text, kwargs FROM {jobs} ORDER BY id")
    assert [r[0] for r in stored] == ids  # v7 ids: id order is push order
    assert [r[1]["a"] for r in stored] == list(range(25))


async def test_bad_job_in_batch_writes_nothing_of_that_batch(chancy: Chancy) -> None:
    await chancy.declare(Queue("default"))
    good = [Job.from_func(jobs.noop) for _ in range(5)]
    bad_kwargs = Job.from_func(jobs.add, kwargs={"a": object()})
    with pytest.raises(InvalidJobError, match=r"job 7 .*kwargs: not JSON-serialisable"):
        async for _ in chancy.push_many(good + good[:2] + [bad_kwargs], batch_size=5):
            pass
    # The first batch (jobs 0-4) committed; the batch holding job 7 wrote nothing.
    assert await rows(chancy, "SELECT count(*) FROM {jobs}") == [(5,)]
    with pytest.raises(InvalidJobError, match=r"job 1 .*priority: expected an integer"):
        async for _ in chancy.push_many([good[0], good[0].with_priority("high")]):
            pass
    with pytest.raises(InvalidJobError, match=r"job 0 .*meta"):
        await chancy.push(good[0].with_meta({"when": datetime.now()}))
    with pytest.raises(InvalidJobError, match="job 0"):
        await chancy.push("not a job")
    strict = Chancy(chancy.dsn, prefix=chancy.prefix, plugins=[], strict_queues=True)
    async with strict:
        with pytest.raises(UnknownQueueError, match=r"job 1: unknown queue 'nope'"):
            async for _ in strict.push_many([good[0], good[0].with_queue("nope")]):
                pass
    assert await rows(chancy, "SELECT count(*) FROM {jobs}") == [(5,)]


async def test_push_to_an_undeclared_queue_waits_for_it(chancy: Chancy) -> None:
    ref = await chancy.push(Job.from_func(jobs.noop, queue="later"))
    job = await chancy.get_job(ref)
    assert job is not None
    assert job.state is QueuedJob.State.PENDING
    assert job.queue == "later"
    await chancy.declare(Queue("default"))
    await chancy.push(Job.from_func(jobs.noop))
    assert await chancy.get_undeclared_queues() == {"later": 1}
    await chancy.declare(Queue("later"))
    assert await chancy.get_undeclared_queues() == {}


async def test_unique_key_returns_existing_job(chancy: Chancy) -> None:
    await chancy.declare(Queue("default"))
    job = Job.from_func(jobs.noop, unique_key="report-1")
    first = await chancy.push(job)
    assert await chancy.push(job) == first
    refs = [
        r
        async for batch in chancy.push_many([job, job.with_unique_key("report-2"), job])
        for r in batch
    ]
    assert refs[0] == first
    assert refs[2] == first
    assert refs[1] != first
    # Once the holder is finished, the key is free again.
    await rows(
        chancy, "UPDATE {jobs} SET state = 'succeeded' WHERE id = %s RETURNING id", first.identifier
    )
    assert await chancy.push(job) != first


async def test_a_key_holder_finishing_mid_push_is_pushed_again_once(chancy: Chancy) -> None:
    # Every push (async, sync, in the caller's cursor) drives one generator of statements;
    # step it by hand to finish the key's holder between the insert and the lookup.
    await chancy.declare(Queue("default"))
    holder = await chancy.push(Job.from_func(jobs.add, unique_key="k"))
    flow = chancy._push_flow(
        [Job.from_func(jobs.add, unique_key="k"), Job.from_func(jobs.add, kwargs={"plain": 1})], 0
    )
    async with chancy.db.connection() as conn:
        step = next(flow)  # the insert: the keyed job is skipped, the plain one goes in
        step = flow.send(await conn.fetchall(*step))  # the lookup of "k"
        await conn.execute(
            chancy.tables.q("UPDATE {jobs} SET state = 'succeeded' WHERE id = %s"),
            (holder.identifier,),
        )
        step = flow.send(await conn.fetchall(*step))  # not found: the skipped job again
        with pytest.raises(StopIteration) as stop:
            flow.send(await conn.fetchall(*step))
    keyed, plain = stop.value.value
    assert keyed != holder
    assert (await chancy.get_job(keyed)).unique_key == "k"
    assert (await chancy.get_job(plain)).kwargs == {"plain": 1}
    counts = await rows(chancy, "SELECT unique_key, count(*) FROM {jobs} GROUP BY 1 ORDER BY 1")
    assert counts == [("k", 2), (None, 1)]  # the finished holder, the new one; no duplicate


async def test_unique_key_under_concurrent_pushes(dsn: str, prefix: str) -> None:
    app = Chancy(dsn, prefix=prefix, plugins=[], max_connection_pool_size=8)
    async with app:
        await app.migrate()
        await app.declare(Queue("default"))
        refs: list[Reference] = []
        job = Job.from_func(jobs.noop, unique_key="contended")

        async def pusher() -> None:
            for _ in range(10):
                refs.append(await app.push(job))

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(pusher)
        assert len(refs) == 80
        assert len(set(refs)) == 1
        assert await rows(app, "SELECT count(*) FROM {jobs}") == [(1,)]


async def test_push_statements_are_per_app(chancy: Chancy, dsn: str) -> None:
    # The push statements are cached as text: a second app (another prefix, notifications
    # off) in the same process must write to its own tables, also once psycopg has prepared
    # them (after a few runs on a connection), and only the notifying app sends a notice.
    other = Chancy(dsn, prefix=chancy.prefix + "b_", plugins=[], notifications=False)
    async with other, chancy.db.dedicated() as listener:
        await other.migrate()
        await listener.execute(f'LISTEN "{chancy.tables.channel}"')
        await listener.execute(f'LISTEN "{other.tables.channel}"')
        for app in (chancy, other):
            await app.declare(Queue("default"))
        await listener.notifies(timeout=0.5)  # the declarations' notices
        mine = [await chancy.push(Job.from_func(jobs.noop)) for _ in range(8)]
        theirs = [await other.push(Job.from_func(jobs.noop)) for _ in range(8)]
        keyed = Job.from_func(jobs.noop, unique_key="k")
        assert await chancy.push(keyed) == await chancy.push(keyed)
        assert await other.push(keyed) == await other.push(keyed)
        got: list[tuple[str, str]] = []
        with anyio.move_on_after(20):  # every notice, also when a loaded machine delays some
            while sum(json.loads(p)["t"] == "pushed" for _, p in got) < 9:
                got += await listener.notifies(timeout=20)
        got += await listener.notifies(timeout=0.3)  # and nothing more than those
        assert sorted(r for (r,) in await rows(chancy, "SELECT id::text FROM {jobs}")) == sorted(
            [r.identifier for r in mine] + [(await chancy.push(keyed)).identifier]
        )
        assert sorted(r for (r,) in await rows(other, "SELECT id::text FROM {jobs}")) == sorted(
            [r.identifier for r in theirs] + [(await other.push(keyed)).identifier]
        )
        await other.migrate(to_version=0)
    pushed = [json.loads(p) for c, p in got if json.loads(p)["t"] == "pushed"]
    assert {c for c, _ in got} == {chancy.tables.channel}
    assert len(pushed) == 9
    assert all(p == {"t": "pushed", "q": ["default"]} for p in pushed)


async def test_wait_for_job(chancy: Chancy) -> None:
    await chancy.declare(Queue("default"))
    ref = await chancy.push(Job.from_func(jobs.noop))
    with pytest.raises(TimeoutError):
        await chancy.wait_for_job(ref, interval=0.05, timeout=0.3)

    async def complete() -> None:
        await anyio.sleep(0.3)
        async with chancy.db.connection() as conn:
            await conn.execute(
                chancy.tables.q(
                    "UPDATE {jobs} SET state = 'succeeded', completed_at = now() WHERE id = %s"
                ),
                (ref.identifier,),
            )
            await conn.execute(
                "SELECT pg_notify(%s, %s)",
                (chancy.tables.channel, json.dumps({"t": "job.done", "ids": [ref.identifier]})),
            )

    async with anyio.create_task_group() as tg:
        tg.start_soon(complete)
        with anyio.fail_after(10):
            # A long interval: only the completion notice can wake it this early.
            started = anyio.current_time()
            done = await chancy.wait_for_job(ref, interval=30)
            waited = anyio.current_time() - started
    assert done is not None
    assert done.state is QueuedJob.State.SUCCEEDED
    assert waited < 10
    await rows(chancy, "DELETE FROM {jobs} RETURNING id")
    assert await chancy.wait_for_job(ref, interval=0.05, timeout=5) is None


async def test_wait_for_job_polls_without_notifications(dsn: str, prefix: str) -> None:
    app = Chancy(dsn, prefix=prefix, plugins=[], notifications=False)
    async with app:
        await app.migrate()
        await app.declare(Queue("default"))
        ref = await app.push(Job.from_func(jobs.noop))
        await rows(app, "UPDATE {jobs} SET state = 'failed' RETURNING id")
        job = await app.wait_for_job(ref, interval=0.05, timeout=5)
        assert job is not None
        assert job.state is QueuedJob.State.FAILED


async def test_cancel_pending_job_fails_it(chancy: Chancy) -> None:
    await chancy.declare(Queue("default"))
    ref = await chancy.push(Job.from_func(jobs.noop, max_attempts=5))
    await chancy.cancel_job(ref)
    job = await chancy.get_job(ref)
    assert job.state is QueuedJob.State.FAILED
    assert job.completed_at is not None
    assert "cancelled" in job.errors[0]["traceback"]
    # A running job is only flagged; its worker stops it.
    ref2 = await chancy.push(Job.from_func(jobs.noop))
    await rows(
        chancy, "UPDATE {jobs} SET state = 'running' WHERE id = %s RETURNING id", ref2.identifier
    )
    await chancy.cancel_job(ref2)
    assert await rows(
        chancy, "SELECT state, cancel_requested FROM {jobs} WHERE id = %s", ref2.identifier
    ) == [("running", True)]


async def test_get_all_workers(chancy: Chancy) -> None:
    assert await chancy.get_all_workers() == []
    await rows(
        chancy,
        "INSERT INTO {workers} (worker_id, incarnation, hostname, pid, tags, queues, expires_at)"
        " VALUES ('w1', 'n', 'host', 1, ARRAY['a'], ARRAY['default'], now()) RETURNING worker_id",
    )
    (worker,) = await chancy.get_all_workers()
    assert worker["worker_id"] == "w1"
    assert worker["tags"] == ["a"]
    assert worker["pid"] == 1


async def test_notify_reaches_listeners(chancy: Chancy) -> None:
    async with chancy.db.dedicated() as listener:
        await listener.execute(f'LISTEN "{chancy.tables.channel}"')
        await chancy.declare(Queue("default"))
        got = await listener.notifies(timeout=5)
    assert any(json.loads(p) == {"t": "queue.changed", "q": "default"} for _, p in got)


async def test_setup_default_logger() -> None:
    from chancy import setup_default_logger

    logger = setup_default_logger(logging.DEBUG)
    assert logger.name == "chancy"
    assert logger.level == logging.DEBUG
    setup_default_logger()
    assert sum(getattr(h, "_chancy_default", False) for h in logger.handlers) == 1


@pytest.mark.parametrize(
    ("executor", "options", "message"),
    [
        ("chancy.executors.nothing.Nope", {}, r"cannot load executor 'chancy\.executors\.nothing"),
        ("jobs.add", {}, "is not a chancy.executors.Executor subclass"),
        (Chancy.Executor.Async, {"bogus": 1}, "does not take the option.*bogus"),
        (
            Chancy.Executor.Process,
            {"maximum_jobs": 3},
            r"maximum_jobs \(it takes: .*maximum_jobs_per_worker",
        ),
    ],
)
async def test_declare_validates_the_executor(chancy: Chancy, executor, options, message) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        await chancy.declare(Queue("q", executor=executor, executor_options=options))
    assert "'q'" in str(caught.value)
    assert await chancy.get_all_queues() == []  # nothing stored
    with pytest.raises(ValueError, match=message):
        chancy.sync_declare(Queue("q", executor=executor, executor_options=options))
    # Good options pass, and pausing a stored queue does not re-import its executor.
    ok = await chancy.declare(
        Queue(
            "q", executor=Chancy.Executor.Process, executor_options={"maximum_jobs_per_worker": 5}
        )
    )
    assert ok.executor_options == {"maximum_jobs_per_worker": 5}
