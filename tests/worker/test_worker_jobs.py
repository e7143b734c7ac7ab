"""Running jobs: outcomes, errors and retries, meta, the job parameter, order, schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest
import wjobs
from support import eventually, fetch, job_row

from chancy import Chancy, Job, Limit, Queue, QueuedJob

pytestmark = pytest.mark.anyio

EXECUTORS = pytest.mark.parametrize(
    ("executor", "prefix_fn"),
    [(Chancy.Executor.Async, "async"), (Chancy.Executor.Threaded, "sync")],
    ids=["async", "threaded"],
)


@EXECUTORS
async def test_job_succeeds(chancy, start_worker, executor, prefix_fn) -> None:
    await chancy.declare(Queue("q", executor=executor, concurrency=2))
    await start_worker()
    ref = await chancy.push(
        Job(func=f"wjobs.{prefix_fn}_record", queue="q", kwargs={"label": "ok", "value": 7})
    )
    job = await chancy.wait_for_job(ref, timeout=10)
    assert job.state == QueuedJob.State.SUCCEEDED
    assert job.completed_at is not None
    assert job.started_at is not None
    assert job.attempts == 1
    assert job.errors == []
    assert wjobs.RUNS["ok"] == [7]
    (taken_by,) = await job_row(chancy, ref.identifier, "taken_by")
    assert taken_by is None


@EXECUTORS
async def test_job_fails_with_traceback(chancy, start_worker, executor, prefix_fn) -> None:
    await chancy.declare(Queue("q", executor=executor))
    await start_worker()
    ref = await chancy.push(Job(func=f"wjobs.{prefix_fn}_fail", queue="q"))
    job = await chancy.wait_for_job(ref, timeout=10)
    assert job.state == QueuedJob.State.FAILED
    assert job.completed_at is not None
    assert len(job.errors) == 1
    assert job.errors[0]["attempt"] == 1
    assert "boom from" in job.errors[0]["traceback"]
    assert "Traceback" in job.errors[0]["traceback"]


async def test_retry_then_fail(chancy, start_worker) -> None:
    await chancy.declare(Queue("q", executor=Chancy.Executor.Async))
    worker = await start_worker()
    seen: list[QueuedJob] = []
    worker.hub.on("job.finished", lambda event: seen.append(event.body["job"]))
    ref = await chancy.push(Job(func="wjobs.async_fail", queue="q", max_attempts=2))
    await eventually(lambda: seen)
    first = seen[0]
    assert first.state == QueuedJob.State.RETRYING
    assert first.scheduled_at > datetime.now(UTC) - timedelta(seconds=0.5)
    job = await chancy.wait_for_job(ref, timeout=10)
    assert job.state == QueuedJob.State.FAILED
    assert [e["attempt"] for e in job.errors] == [1, 2]
    assert job.attempts == 2
    assert len(wjobs.RUNS["fail"]) == 2


@EXECUTORS
async def test_meta_and_job_parameter(chancy, start_worker, executor, prefix_fn) -> None:
    await chancy.declare(Queue("q", executor=executor))
    await start_worker()
    ref = await chancy.push(
        Job(func=f"wjobs.{prefix_fn}_meta", queue="q", kwargs={"label": "m"}, meta={"keep": 1})
    )
    job = await chancy.wait_for_job(ref, timeout=10)
    assert job.state == QueuedJob.State.SUCCEEDED
    assert wjobs.RUNS["m"] == [ref.identifier]
    assert job.meta["keep"] == 1
    if prefix_fn == "async":
        assert job.meta["seen_id"] == ref.identifier
        assert job.meta["attempt"] == 1
    else:
        assert job.meta["thread"]


async def test_other_kind_of_function_accepted(chancy, start_worker) -> None:
    await chancy.declare(Queue("a", executor=Chancy.Executor.Async))
    await chancy.declare(Queue("t", executor=Chancy.Executor.Threaded))
    await start_worker()
    r1 = await chancy.push(Job(func="wjobs.sync_record", queue="a", kwargs={"label": "x"}))
    r2 = await chancy.push(Job(func="wjobs.async_record", queue="t", kwargs={"label": "x"}))
    for ref in (r1, r2):
        job = await chancy.wait_for_job(ref, timeout=10)
        assert job.state == QueuedJob.State.SUCCEEDED
    assert len(wjobs.RUNS["x"]) == 2


async def test_unimportable_function_fails_clearly(chancy, start_worker) -> None:
    await chancy.declare(Queue("q", executor=Chancy.Executor.Async))
    await start_worker()
    ref = await chancy.push(Job(func="wjobs.no_such_function", queue="q"))
    job = await chancy.wait_for_job(ref, timeout=10)
    assert job.state == QueuedJob.State.FAILED
    assert "no_such_function" in job.errors[0]["traceback"]


@pytest.mark.parametrize("executor", [Chancy.Executor.Async, Chancy.Executor.Threaded])
async def test_priority_then_fifo_at_concurrency_1(chancy, start_worker, executor) -> None:
    await chancy.declare(Queue("q", executor=executor, concurrency=1))
    fn = "wjobs.async_record" if executor == Chancy.Executor.Async else "wjobs.sync_record"
    plan = [(0, "a"), (5, "b"), (0, "c"), (10, "d"), (5, "e"), (0, "f"), (-3, "g"), (10, "h")]
    jobs = [Job(func=fn, queue="q", priority=p, kwargs={"label": "o", "value": v}) for p, v in plan]
    refs = [r async for batch in chancy.push_many(jobs) for r in batch]
    await start_worker()
    for ref in refs:
        await chancy.wait_for_job(ref, timeout=10)
    assert wjobs.RUNS["o"] == ["d", "h", "b", "e", "a", "c", "f", "g"]


async def test_scheduled_job_waits_for_its_time(chancy, start_worker) -> None:
    await chancy.declare(Queue("q", executor=Chancy.Executor.Async, polling_interval=0.2))
    await start_worker()
    at = datetime.now(UTC) + timedelta(seconds=1.5)
    ref = await chancy.push(
        Job(func="wjobs.async_record", queue="q", kwargs={"label": "s"}, scheduled_at=at)
    )
    now_ref = await chancy.push(Job(func="wjobs.async_record", queue="q", kwargs={"label": "n"}))
    await chancy.wait_for_job(now_ref, timeout=10)
    assert wjobs.RUNS["s"] == []
    (state,) = await job_row(chancy, ref.identifier, "state")
    assert state == "pending"
    job = await chancy.wait_for_job(ref, timeout=10)
    assert job.state == QueuedJob.State.SUCCEEDED
    assert job.started_at >= at


async def test_time_limit_cancels_async_job(chancy, start_worker) -> None:
    await chancy.declare(Queue("q", executor=Chancy.Executor.Async))
    await start_worker()
    ref = await chancy.push(
        Job(
            func="wjobs.async_sleep",
            queue="q",
            kwargs={"label": "t", "seconds": 30},
            limits=[Limit(Limit.Type.TIME, 1)],
        )
    )
    with anyio.fail_after(8):
        job = await chancy.wait_for_job(ref)
    assert job.state == QueuedJob.State.FAILED
    assert "time limit exceeded: 1 s" in job.errors[0]["traceback"]
    assert wjobs.RUNS["t"] == ["start"]


@EXECUTORS
async def test_cancel_running_job(chancy, start_worker, executor, prefix_fn) -> None:
    await chancy.declare(Queue("q", executor=executor))
    await start_worker()
    kwargs = {"label": "c", "seconds": 30} if prefix_fn == "async" else {"label": "c", "gate": "c"}
    func = "wjobs.async_sleep" if prefix_fn == "async" else "wjobs.sync_wait_gate"
    ref = await chancy.push(Job(func=func, queue="q", kwargs=kwargs, max_attempts=3))
    await eventually(lambda: wjobs.RUNS["c"] == ["start"])
    await chancy.cancel_job(ref)
    with anyio.fail_after(8):
        job = await chancy.wait_for_job(ref)
    wjobs.GATES["c"].set()
    assert job.state == QueuedJob.State.FAILED
    assert job.attempts == 1, "a cancelled job is not retried"
    assert "cancelled" in job.errors[-1]["traceback"]


async def test_cancel_noticed_without_notifications(dsn, prefix, start_worker) -> None:
    async with Chancy(dsn, prefix=prefix, plugins=[], notifications=False) as app:
        await app.migrate()
        await app.declare(Queue("q", executor=Chancy.Executor.Async))
        await start_worker(app)
        ref = await app.push(
            Job(func="wjobs.async_sleep", queue="q", kwargs={"label": "c", "seconds": 30})
        )
        await eventually(lambda: wjobs.RUNS["c"] == ["start"])
        await app.cancel_job(ref)
        job = await app.wait_for_job(ref, interval=0.1, timeout=10)
        assert job.state == QueuedJob.State.FAILED


async def test_wait_for_job_woken_by_batch_notice(chancy, start_worker) -> None:
    await chancy.declare(Queue("q", executor=Chancy.Executor.Async))
    await start_worker()
    ref = await chancy.push(Job(func="wjobs.async_noop", queue="q"))
    # With a 30 s fallback poll, returning within 5 s proves the job.done notice woke it.
    with anyio.fail_after(5):
        job = await chancy.wait_for_job(ref, interval=30)
    assert job.state == QueuedJob.State.SUCCEEDED


@EXECUTORS
async def test_many_jobs_all_succeed_once(chancy, start_worker, executor, prefix_fn) -> None:
    # Short jobs: exercises the prefetch and, on threads, several jobs per thread hand-off.
    await chancy.declare(Queue("q", executor=executor, concurrency=8))
    func = f"wjobs.{prefix_fn}_record"
    jobs = [Job(func=func, queue="q", kwargs={"label": "many", "value": i}) for i in range(2000)]
    async for _ in chancy.push_many(jobs):
        pass
    await start_worker()

    async def done() -> bool:
        rows = await fetch(chancy, "SELECT count(*) FROM {jobs} WHERE state = 'succeeded'")
        return rows[0][0] == 2000

    await eventually(done, timeout=30, interval=0.1)
    assert sorted(wjobs.RUNS["many"]) == list(range(2000))


@pytest.mark.parametrize("kind", ["nul", "object"])
async def test_meta_the_database_refuses_does_not_block_updates(chancy, start_worker, kind) -> None:
    await chancy.declare(Queue("q", executor=Chancy.Executor.Async, concurrency=2))
    await start_worker()
    bad = await chancy.push(Job(func="wjobs.async_bad_meta", queue="q", kwargs={"kind": kind}))
    good = await chancy.push(Job(func="wjobs.async_noop", queue="q"))
    for ref in (bad, good):
        assert (await chancy.wait_for_job(ref, timeout=10)).state == QueuedJob.State.SUCCEEDED
    meta = (await chancy.get_job(bad)).meta
    if kind == "nul":
        assert meta["value"] == "nul\ufffdinside"
    else:
        assert "could not be saved" in meta["chancy_error"]


async def test_no_notices_without_notifications(dsn, prefix, start_worker) -> None:
    from psycopg import sql

    async with Chancy(dsn, prefix=prefix, plugins=[], notifications=False) as app:
        await app.migrate()
        await app.declare(Queue("q", executor=Chancy.Executor.Async, polling_interval=0.1))
        async with app.db.dedicated() as conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(app.tables.channel)))
            worker = await start_worker(app)
            ref = await app.push(Job(func="wjobs.async_noop", queue="q"))
            job = await app.wait_for_job(ref, interval=0.05, timeout=10)
            assert job.state == QueuedJob.State.SUCCEEDED
            assert worker.listener is None
            assert await conn.notifies(timeout=0.3) == []


@pytest.mark.parametrize("func", ["asyncio_only", "asyncio_future_only"])
async def test_asyncio_only_job_on_a_trio_worker_says_why(
    chancy, start_worker, anyio_backend, func
) -> None:
    """On asyncio it runs; on trio it fails with an error naming the mismatch and the fix."""
    await chancy.declare(Queue("q", executor=Chancy.Executor.Async))
    await start_worker()
    ref = await chancy.push(Job(func=f"wjobs.{func}", queue="q", kwargs={"label": "a"}))
    job = await chancy.wait_for_job(ref, timeout=10)
    if anyio_backend == "asyncio":
        assert job.state == QueuedJob.State.SUCCEEDED
        assert wjobs.RUNS["a"] == [None]
        return
    assert job.state == QueuedJob.State.FAILED
    (error,) = job.errors
    last = error["traceback"].splitlines()[-1]
    assert last.startswith(f"chancy.errors.WrongEventLoop: wjobs.{func} uses asyncio, but this")
    assert "--backend asyncio" in last
    assert "anyio" in last
    assert "RuntimeError: no running event loop" in error["traceback"]  # the cause, kept
