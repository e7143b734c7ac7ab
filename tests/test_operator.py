"""The operator's API: listing, waiting for, retrying, purging, moving and reprioritising jobs,
pausing queues (with a resume time) and queue figures; async on both backends, sync twins."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import anyio
import jobs
import pytest

from chancy import Chancy, Job, JobFilter, JobsResult, Queue, QueuedJob, QueueStats
from chancy.errors import UnknownQueueError

pytestmark = pytest.mark.anyio

MISSING = "0190a000-0000-7000-8000-000000000000"


async def sql(chancy: Chancy, query: str, params: object = None) -> list[tuple]:
    async with chancy.db.connection() as conn:
        if query.startswith("SELECT") or "RETURNING" in query:
            return await conn.fetchall(chancy.tables.q(query), params)
        await conn.execute(chancy.tables.q(query), params)
        return []


async def set_state(chancy: Chancy, ids: list[str], state: str, **extra: object) -> None:
    sets = "".join(f", {column} = %(x_{column})s" for column in extra)
    finished = state in ("succeeded", "failed")
    await sql(
        chancy,
        "UPDATE {jobs} SET state = %(state)s, attempts = 1"
        + (", completed_at = now()" if finished and "completed_at" not in extra else "")
        + (", started_at = now(), taken_by = 'w'" if state == "running" else "")
        + sets
        + " WHERE id = ANY(%(ids)s::uuid[]) RETURNING id",
        {"state": state, "ids": ids, **{f"x_{k}": v for k, v in extra.items()}},
    )


async def push(chancy: Chancy, n: int, queue: str = "default", func=jobs.noop) -> list[str]:
    refs = []
    for _ in range(n):
        refs.append((await chancy.push(Job.from_func(func, queue=queue))).identifier)
    return refs


# -- listing -----------------------------------------------------------------------------------


async def test_list_jobs_filters_newest_first_and_pages(chancy: Chancy) -> None:
    a = await push(chancy, 5, "a")
    b = await push(chancy, 3, "b", func=jobs.add)
    await set_state(chancy, a[:3], "failed")
    listed = await chancy.list_jobs()
    assert [j.id for j in listed] == list(reversed(a + b))
    assert all(isinstance(j, QueuedJob) for j in listed)
    failed = await chancy.list_jobs(queue="a", state=QueuedJob.State.FAILED)
    assert [j.id for j in failed] == list(reversed(a[:3]))
    assert [j.id for j in await chancy.list_jobs(state="failed", limit=2)] == [a[2], a[1]]
    page = await chancy.list_jobs(state="failed", limit=2, after=a[1])
    assert [j.id for j in page] == [a[0]]
    assert [j.id for j in await chancy.list_jobs(func="jobs.add")] == list(reversed(b))
    assert await chancy.list_jobs(queue="a", state="pending", func="jobs.add") == []
    now = datetime.now(UTC)
    assert len(await chancy.list_jobs(since=now - timedelta(minutes=1))) == 8
    assert await chancy.list_jobs(since=now + timedelta(minutes=1)) == []
    assert await chancy.list_jobs(until=now - timedelta(minutes=1)) == []
    with pytest.raises(ValueError, match="state"):
        await chancy.list_jobs(state="lost")
    with pytest.raises(ValueError, match="limit"):
        await chancy.list_jobs(limit=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        await chancy.list_jobs(since=datetime.now())


async def test_list_jobs_plan_uses_an_index(chancy: Chancy) -> None:
    from chancy import _sql

    where = _sql.jobs_where(queue=True, state=True)
    query = _sql.list_jobs_query(chancy.tables, where)
    async with chancy.db.connection() as conn:
        await conn.execute(chancy.tables.q("ANALYZE {jobs}"))
        await conn.execute("SET enable_seqscan = off")
        text = query.as_string(None).replace("%(queue)s", "'a'").replace("%(state)s", "'failed'")
        text = text.replace("%(limit)s", "100")
        plan = await conn.fetchall("EXPLAIN " + text)
        await conn.execute("RESET enable_seqscan")
    plan_text = "\n".join(row[0] for row in plan)
    assert "jobs_finished_list_idx" in plan_text
    assert "Sort" not in plan_text


# -- waiting -------------------------------------------------------------------------------------


async def test_wait_for_jobs_and_states(chancy: Chancy) -> None:
    ids = await push(chancy, 3)
    with pytest.raises(TimeoutError, match="3 of 3 jobs"):
        await chancy.wait_for_jobs(ids, timeout=0.3, interval=0.1)

    async def finish_later() -> None:
        await anyio.sleep(0.3)
        await set_state(chancy, ids[:2], "succeeded")
        await sql(chancy, "DELETE FROM {jobs} WHERE id = %s", (ids[2],))
        # The worker's completion notice (the wait wakes on it, not on the poll).
        await chancy._run(lambda conn: chancy._notify_conn(conn, "job.done", {"ids": ids[:2]}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(finish_later)
        with anyio.fail_after(5):
            done = await chancy.wait_for_jobs(ids, interval=30)
    assert [j.id for j in done] == ids[:2]
    assert all(j.state is QueuedJob.State.SUCCEEDED for j in done)

    [one] = await push(chancy, 1)
    with pytest.raises(TimeoutError, match=f"job {one} did not finish"):
        await chancy.wait_for_job(one, timeout=0.2, interval=0.05)
    # Waiting for other states than finished ones: a state seen at the next poll.
    pending = await chancy.wait_for_job(one, states=[QueuedJob.State.PENDING], timeout=1)
    assert pending is not None
    assert pending.state is QueuedJob.State.PENDING

    async def start_later() -> None:
        await anyio.sleep(0.2)
        await set_state(chancy, [one], "running")

    async with anyio.create_task_group() as tg:
        tg.start_soon(start_later)
        running = await chancy.wait_for_job(one, states=["running"], interval=0.05, timeout=5)
    assert running is not None
    assert running.state is QueuedJob.State.RUNNING
    assert await chancy.wait_for_jobs([]) == []
    with pytest.raises(ValueError):
        await chancy.wait_for_job(one, states=["nope"])


# -- bulk operations -------------------------------------------------------------------------


async def test_retry_jobs_by_reference(chancy: Chancy) -> None:
    ids = await push(chancy, 5)
    errors = json.dumps([{"attempt": 0, "traceback": "boom"}])
    await set_state(chancy, ids[:2], "failed", errors=errors)
    await set_state(chancy, ids[2:3], "succeeded")
    await set_state(chancy, ids[3:4], "running")
    result = await chancy.retry_jobs([*ids, MISSING, "not-a-uuid"])
    assert isinstance(result, JobsResult)
    assert result.done == ids[:3]
    assert result.skipped == {
        ids[3]: "job is running",
        ids[4]: "job is pending, not finished",
        MISSING: "no such job",
        "not-a-uuid": "not a job id",
    }
    [job] = await chancy.get_jobs([ids[0]])
    assert job.state is QueuedJob.State.PENDING
    assert job.attempts == 0
    assert job.errors == [{"attempt": 0, "traceback": "boom"}]
    assert job.completed_at is None
    again = await chancy.retry_jobs(ids[:1])
    assert again.done == []
    assert not again
    assert (await chancy.retry_jobs([])).done == []


async def test_retry_keeps_a_unique_key_to_one_unfinished_job(chancy: Chancy) -> None:
    first = (await chancy.push(Job.from_func(jobs.noop, unique_key="k"))).identifier
    await set_state(chancy, [first], "failed")
    second = (await chancy.push(Job.from_func(jobs.noop, unique_key="k"))).identifier
    assert second != first
    held = await chancy.retry_jobs([first])
    assert held.skipped == {first: "its unique_key is held by an unfinished job"}
    await set_state(chancy, [second], "succeeded")
    both = await chancy.retry_jobs([first, second])
    assert both.done == [second]  # the newest of the two
    assert both.skipped == {first: "its unique_key is held by an unfinished job"}


async def test_bulk_operations_notify_each_queue_once(chancy: Chancy) -> None:
    a = await push(chancy, 3, "a")
    b = await push(chancy, 2, "b")
    await set_state(chancy, a + b, "failed")
    async with chancy.db.dedicated() as listener:
        await listener.execute(f'LISTEN "{chancy.tables.channel}"')
        result = await chancy.retry_jobs(where=JobFilter(state="failed"))
        assert sorted(result.done) == sorted(a + b)
        notices = await listener.notifies(timeout=1)
        await anyio.sleep(0.1)
        notices += await listener.notifies(timeout=0.2)
    payloads = sorted(json.loads(p)["q"] for _, p in notices)
    assert payloads == [["a"], ["b"]]


async def test_where_filters_and_the_all_flag(chancy: Chancy) -> None:
    a = await push(chancy, 3, "a")
    b = await push(chancy, 2, "b", func=jobs.add)
    await set_state(chancy, a[:2] + b[:1], "failed")
    with pytest.raises(ValueError, match="all=True"):
        await chancy.purge_jobs(where=JobFilter())
    with pytest.raises(ValueError, match="not both"):
        await chancy.purge_jobs(a, where=JobFilter(queue="a"))
    with pytest.raises(ValueError, match="either"):
        await chancy.purge_jobs()
    with pytest.raises(ValueError, match="JobFilter.state"):
        JobFilter(state="lost")
    purged = await chancy.purge_jobs(where=JobFilter(queue="a", state=QueuedJob.State.FAILED))
    assert purged.done == a[:2]
    assert purged.skipped == {}
    moved = await chancy.move_jobs(where=JobFilter(func="jobs.add"), queue="c")
    assert moved.done == b
    assert {j.queue for j in await chancy.get_jobs(b)} == {"c"}
    everything = await chancy.purge_jobs(all=True)
    assert sorted(everything.done) == sorted([a[2], *b])
    assert await chancy.list_jobs() == []


async def test_purge_refuses_running_jobs_unless_asked(chancy: Chancy) -> None:
    ids = await push(chancy, 3)
    await set_state(chancy, ids[:1], "running")
    await set_state(chancy, ids[1:2], "succeeded")
    result = await chancy.purge_jobs([*ids, MISSING])
    assert result.done == ids[1:]
    assert result.skipped == {
        ids[0]: "job is running (pass include_running=True to delete it)",
        MISSING: "no such job",
    }
    async with chancy.db.dedicated() as listener:
        await listener.execute(f'LISTEN "{chancy.tables.channel}"')
        forced = await chancy.purge_jobs(ids[:1], include_running=True)
        notices = await listener.notifies(timeout=1)
    assert forced.done == ids[:1]
    # Its worker is asked to stop it.
    assert [json.loads(p) for _, p in notices] == [{"t": "job.cancelled", "id": ids[0]}]
    assert await chancy.get_jobs(ids) == []


async def test_move_jobs(dsn: str, prefix: str, chancy: Chancy) -> None:
    ids = await push(chancy, 3)
    await set_state(chancy, ids[:1], "running")
    result = await chancy.move_jobs([*ids, MISSING], "elsewhere")
    assert result.done == ids[1:]
    assert result.skipped == {ids[0]: "job is running", MISSING: "no such job"}
    assert [j.queue for j in await chancy.get_jobs(ids)] == ["default", "elsewhere", "elsewhere"]
    assert await chancy.get_undeclared_queues() == {"default": 1, "elsewhere": 2}
    with pytest.raises(ValueError, match="queue"):
        await chancy.move_jobs(ids, "")
    strict = Chancy(dsn, prefix=prefix, plugins=[], strict_queues=True)
    async with strict:
        with pytest.raises(UnknownQueueError, match="'nowhere'"):
            await strict.move_jobs(ids[1:], "nowhere")
        await strict.declare(Queue("declared"))
        assert (await strict.move_jobs(ids[1:], "declared")).done == ids[1:]
    assert {j.queue for j in await chancy.get_jobs(ids[1:])} == {"declared"}


async def test_reprioritize_jobs(chancy: Chancy) -> None:
    ids = await push(chancy, 3)
    await set_state(chancy, ids[:1], "running")
    result = await chancy.reprioritize_jobs(ids, 7)
    assert result.done == ids[1:]
    assert result.skipped == {ids[0]: "job is running"}
    assert [j.priority for j in await chancy.get_jobs(ids)] == [0, 7, 7]
    by_filter = await chancy.reprioritize_jobs(where=JobFilter(queue="default"), priority=-1)
    assert by_filter.done == ids[1:]
    with pytest.raises(ValueError, match="priority"):
        await chancy.reprioritize_jobs(ids, 2**40)
    with pytest.raises(ValueError, match="priority"):
        await chancy.reprioritize_jobs(ids, True)


async def test_ex_variants_follow_the_callers_transaction(chancy: Chancy, anyio_backend) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("an AsyncCursor needs asyncio")
    ids = await push(chancy, 2)
    await set_state(chancy, ids, "failed")
    async with chancy.pool.connection() as conn:
        async with conn.transaction(), conn.cursor() as cursor:
            result = await chancy.retry_jobs_ex(cursor, ids)
            assert result.done == ids
            await chancy.reprioritize_jobs_ex(cursor, ids, 3)
            await chancy.move_jobs_ex(cursor, ids, "other")
        async with conn.transaction(force_rollback=True), conn.cursor() as cursor:
            assert (await chancy.purge_jobs_ex(cursor, ids)).done == ids
    jobs_now = await chancy.get_jobs(ids)
    assert [(j.state.value, j.priority, j.queue) for j in jobs_now] == [("pending", 3, "other")] * 2


# -- queues ------------------------------------------------------------------------------------


async def test_pause_and_resume_queue(chancy: Chancy) -> None:
    await chancy.declare(Queue("q"))
    paused = await chancy.pause_queue("q")
    assert paused.state is Queue.State.PAUSED
    assert paused.resume_at is None
    resumed = await chancy.resume_queue("q")
    assert resumed.state is Queue.State.ACTIVE
    assert resumed.resume_at is None
    later = datetime.now(UTC) + timedelta(hours=1)
    paused = await chancy.pause_queue("q", resume_at=later)
    assert paused.state is Queue.State.PAUSED
    assert paused.resume_at == later
    assert (await chancy.get_queue("q")).resume_at == later
    # By the database's clock; a moment in the past reads as active at once.
    soon = await chancy.pause_queue("q", resume_at=timedelta(seconds=0.3))
    assert soon.state is Queue.State.PAUSED
    assert soon.resume_at is not None
    await anyio.sleep(0.4)
    back = await chancy.get_queue("q")
    assert back.state is Queue.State.ACTIVE
    assert back.resume_at is None
    # set_queue_state pauses for good.
    assert (await chancy.set_queue_state("q", Queue.State.PAUSED)).resume_at is None
    with pytest.raises(UnknownQueueError):
        await chancy.pause_queue("nope")
    with pytest.raises(UnknownQueueError):
        await chancy.resume_queue("nope")
    with pytest.raises(ValueError, match="timezone-aware"):
        await chancy.pause_queue("q", resume_at=datetime.now())
    with pytest.raises(ValueError, match="resume_at"):
        Queue("x", resume_at="tomorrow")  # type: ignore[arg-type]
    assert Queue.unpack(paused.pack()) == paused
    assert Queue.unpack(paused.pack()).resume_at == later


async def test_queue_stats(chancy: Chancy) -> None:
    await chancy.declare(Queue("a"))
    await chancy.declare(Queue("idle"))
    a = await push(chancy, 6, "a")
    u = await push(chancy, 1, "undeclared")
    await set_state(chancy, a[:1], "running")
    await set_state(chancy, a[1:2], "retrying")
    await set_state(chancy, a[2:3], "failed")
    await set_state(chancy, a[3:4], "succeeded")
    await set_state(
        chancy, a[4:5], "succeeded", completed_at=datetime.now(UTC) - timedelta(minutes=5)
    )
    await sql(
        chancy, "UPDATE {jobs} SET scheduled_at = now() - interval '1 hour' WHERE id = %s", (a[5],)
    )
    await sql(
        chancy,
        "INSERT INTO {workers} (worker_id, incarnation, hostname, pid, queues, expires_at)"
        " VALUES ('w1', 'i', 'h', 1, ARRAY['a'], now() + interval '1 minute'),"
        " ('w0', 'i', 'h', 2, ARRAY['a'], now() - interval '1 minute')",
    )
    stats = {s.name: s for s in await chancy.queue_stats()}
    assert sorted(stats) == ["a", "idle", "undeclared"]
    s = stats["a"]
    assert isinstance(s, QueueStats)
    assert (s.declared, s.state, s.pending, s.retrying, s.running) == (
        True,
        Queue.State.ACTIVE,
        1,
        1,
        1,
    )
    assert 3500 < s.oldest_runnable_age < 3700
    assert (s.succeeded_last_minute, s.failed_last_minute) == (1, 1)
    assert (s.succeeded_last_hour, s.failed_last_hour) == (2, 1)
    assert s.workers == ("w1",)
    assert stats["idle"] == QueueStats(
        "idle", True, Queue.State.ACTIVE, None, 0, 0, 0, None, 0, 0, 0, 0, ()
    )
    assert stats["undeclared"].declared is False
    assert stats["undeclared"].state is None
    assert stats["undeclared"].pending == 1
    assert u
    [only] = await chancy.queue_stats("a")
    assert only == s.__class__(**{**s.__dict__, "oldest_runnable_age": only.oldest_runnable_age})
    assert await chancy.queue_stats("nothing-here") == []
    await chancy.pause_queue("idle", resume_at=timedelta(hours=1))
    [idle] = await chancy.queue_stats("idle")
    assert idle.state is Queue.State.PAUSED
    assert idle.resume_at is not None


# -- the sync twins ------------------------------------------------------------------------------


def sync_sql(app: Chancy, query: str, params: object = None) -> None:
    with app.sync_pool.connection() as conn:
        conn.execute(app.tables.q(query), params)


def test_sync_twins(sync_chancy: Chancy) -> None:
    app = sync_chancy
    app.sync_declare(Queue("a"))
    ids = [app.sync_push(Job.from_func(jobs.noop, queue="a")).identifier for _ in range(4)]
    sync_sql(
        app,
        "UPDATE {jobs} SET state = 'failed', completed_at = now() WHERE id = ANY(%s::uuid[])",
        (ids[:2],),
    )
    assert [j.id for j in app.sync_list_jobs(queue="a", state="failed")] == [ids[1], ids[0]]
    assert [j.id for j in app.sync_wait_for_jobs(ids[:2], timeout=1)] == ids[:2]
    assert app.sync_wait_for_job(ids[0], timeout=1).state is QueuedJob.State.FAILED
    assert app.sync_wait_for_job(ids[2], states=["pending"], timeout=1) is not None
    with pytest.raises(TimeoutError):
        app.sync_wait_for_jobs(ids, timeout=0.2, interval=0.05)
    retried = app.sync_retry_jobs([*ids[:3], MISSING])
    assert retried.done == ids[:2]
    assert retried.skipped == {ids[2]: "job is pending, not finished", MISSING: "no such job"}
    assert app.sync_reprioritize_jobs(ids[:1], 5).done == ids[:1]
    assert app.sync_move_jobs(where=JobFilter(queue="a", func="jobs.noop"), queue="b").done == ids
    assert app.sync_purge_jobs(ids[3:]).done == ids[3:]
    stats = {s.name: s for s in app.sync_queue_stats()}
    assert stats["b"].pending == 3
    assert stats["a"].pending == 0
    assert app.sync_pause_queue("a", resume_at=timedelta(hours=1)).state is Queue.State.PAUSED
    assert app.sync_resume_queue("a").state is Queue.State.ACTIVE
    with app.sync_pool.connection() as conn:
        with conn.transaction(force_rollback=True), conn.cursor() as cursor:
            assert app.sync_purge_jobs_ex(cursor, ids).done == ids[:3]
        with conn.cursor() as cursor:
            assert app.sync_retry_jobs_ex(cursor, ids).done == []
            assert app.sync_reprioritize_jobs_ex(cursor, ids[:3], 1).done == ids[:3]
            assert app.sync_move_jobs_ex(cursor, ids[:3], "a").done == ids[:3]
    assert len(app.sync_list_jobs(queue="a")) == 3


def test_operator_names_have_sync_twins() -> None:
    for name in (
        "list_jobs",
        "wait_for_jobs",
        "retry_jobs",
        "retry_jobs_ex",
        "purge_jobs",
        "purge_jobs_ex",
        "move_jobs",
        "move_jobs_ex",
        "reprioritize_jobs",
        "reprioritize_jobs_ex",
        "pause_queue",
        "resume_queue",
        "queue_stats",
    ):
        assert callable(getattr(Chancy, name))
        assert callable(getattr(Chancy, f"sync_{name}"))
