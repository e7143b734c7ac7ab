"""Starting and stopping: migrations, graceful and forced shutdown, embedding, signals, the
heartbeat, identity and guarded writes."""

from __future__ import annotations

import os
import signal

import anyio
import pytest
import wjobs
from support import FAST, eventually, fetch, job_row

from chancy import Chancy, Job, Queue, QueuedJob
from chancy.actors.batcher import Batcher
from chancy.errors import MigrationRequired, MigrationsNeededError
from chancy.executors.asyncex import AsyncExecutor
from chancy.worker import Worker

pytestmark = pytest.mark.anyio

ASYNC = Chancy.Executor.Async


async def test_unmigrated_database_raises_clear_error(dsn) -> None:
    async with Chancy(dsn, prefix="never_migrated_", plugins=[]) as app:
        with pytest.raises(MigrationRequired) as info:
            async with Worker(app, **FAST):
                pass
    assert isinstance(info.value, MigrationsNeededError)  # upstream Chancy's name
    message = str(info.value)
    assert "chancy.migrate()" in message
    assert "misc migrate" in message


async def test_graceful_stop_lets_running_jobs_finish(chancy) -> None:
    await chancy.declare(Queue("q", executor=ASYNC))
    worker = Worker(chancy, **{**FAST, "worker_id": "g"})
    await worker.start()
    ref = await chancy.push(
        Job(func="wjobs.async_sleep", queue="q", kwargs={"label": "s", "seconds": 0.5})
    )
    await eventually(lambda: wjobs.RUNS["s"] == ["start"])
    assert [w["worker_id"] for w in await chancy.get_all_workers()] == ["g"]
    with anyio.fail_after(5):
        assert await worker.stop() is True
    state, attempts = await job_row(chancy, ref.identifier, "state", "attempts")
    assert (state, attempts) == ("succeeded", 1)
    assert await chancy.get_all_workers() == [], "a clean exit leaves the cluster"


@pytest.mark.parametrize("kind", ["async", "threaded"])
async def test_stop_timeout_puts_running_jobs_back(chancy, kind) -> None:
    executor = ASYNC if kind == "async" else Chancy.Executor.Threaded
    await chancy.declare(Queue("q", executor=executor, concurrency=2))
    worker = Worker(chancy, **{**FAST, "shutdown_timeout": 0.5})
    await worker.start()
    func = "wjobs.async_wait_gate" if kind == "async" else "wjobs.sync_wait_gate"
    refs = [
        await chancy.push(Job(func=func, queue="q", kwargs={"label": "w", "gate": "never"}))
        for _ in range(2)
    ]
    await eventually(lambda: wjobs.RUNS["w"] == ["start", "start"])
    try:
        with anyio.fail_after(5):
            assert await worker.stop() is False
    finally:
        wjobs.GATES["never"].set()
    for ref in refs:
        row = await job_row(chancy, ref.identifier, "state", "attempts", "taken_by", "started_at")
        assert row == ("pending", 0, None, None)


async def test_embedded_run_cancelled_puts_jobs_back(chancy) -> None:
    await chancy.declare(Queue("q", executor=ASYNC))
    worker = Worker(chancy, **FAST)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        ref = await chancy.push(
            Job(func="wjobs.async_sleep", queue="q", kwargs={"label": "e", "seconds": 30})
        )
        done = await chancy.push(Job(func="wjobs.async_noop", queue="q"))
        await eventually(lambda: wjobs.RUNS["e"] == ["start"])
        tg.cancel_scope.cancel()
    assert (await job_row(chancy, ref.identifier, "state", "attempts")) == ("pending", 0)
    assert await worker.stop() is True  # already stopped: a no-op
    assert (await job_row(chancy, done.identifier, "state"))[0] in ("pending", "succeeded")


async def test_signals_graceful_then_immediate(chancy) -> None:
    await chancy.declare(Queue("q", executor=ASYNC))
    worker = Worker(chancy, **{**FAST, "register_signal_handlers": True, "shutdown_timeout": 30})
    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            ref = await chancy.push(
                Job(func="wjobs.async_sleep", queue="q", kwargs={"label": "k", "seconds": 30})
            )
            await eventually(lambda: wjobs.RUNS["k"] == ["start"])
            os.kill(os.getpid(), signal.SIGTERM)
            await eventually(worker.shutdown_event.is_set)
            await anyio.sleep(0.3)
            assert not worker._stopped.is_set(), "the first signal waits for running jobs"
            os.kill(os.getpid(), signal.SIGINT)
            await worker.wait_for_shutdown()
    assert (await job_row(chancy, ref.identifier, "state", "attempts")) == ("pending", 0)


async def test_heartbeat_announces_and_expires(chancy, start_worker) -> None:
    await chancy.declare(Queue("q", executor=ASYNC))
    await fetch(
        chancy,
        "INSERT INTO {workers} (worker_id, incarnation, hostname, pid, expires_at)"
        " VALUES ('ghost', 'x', 'h', 1, now() - interval '1 second') RETURNING 1",
    )
    worker = await start_worker(worker_id="alive")
    await eventually(lambda: worker.heartbeat.beats >= 2, timeout=5)
    workers = {w["worker_id"]: w for w in await chancy.get_all_workers()}
    assert set(workers) == {"alive"}, "the expired worker was removed"
    me = workers["alive"]
    assert me["incarnation"] == worker.incarnation
    assert me["pid"] == os.getpid()
    assert me["queues"] == ["q"]
    assert "worker_id=alive" in me["tags"]
    assert me["expires_at"] > me["last_seen"]


async def test_identity_includes_a_nonce(chancy) -> None:
    a, b = Worker(chancy, worker_id="same"), Worker(chancy, worker_id="same")
    assert a.taken_by != b.taken_by
    assert a.taken_by.startswith("same:")
    assert b.taken_by.startswith("same:")


async def test_attempt_counted_at_claim_and_writes_are_guarded(chancy) -> None:
    queue = await chancy.declare(Queue("q", executor=ASYNC))
    ref = await chancy.push(Job(func="wjobs.async_noop", queue="q", max_attempts=3))
    worker = Worker(chancy, **FAST)
    async with chancy.db.connection() as conn:
        (job,) = await worker.fetch_jobs(queue, conn, up_to=5)
        assert await worker.fetch_jobs(queue, conn, up_to=5) == []
    assert job.id == ref.identifier
    assert job.attempts == 1
    assert job.state == QueuedJob.State.RUNNING
    row = await job_row(chancy, job.id, "state", "attempts", "taken_by")
    assert row == ("running", 1, worker.taken_by)

    finished = AsyncExecutor(worker, queue).new_state(job)
    batcher = Batcher(worker)

    async def write_and_read() -> tuple:
        assert await batcher.write([finished])
        return await job_row(chancy, job.id, "state", "attempts", "taken_by")

    # Presumed dead, the job was taken by another worker: the late write changes nothing.
    await fetch(
        chancy, "UPDATE {jobs} SET taken_by = 'other:1' WHERE id = %s RETURNING 1", (job.id,)
    )
    assert await write_and_read() == ("running", 1, "other:1")
    # Same worker string but a later attempt: still nothing.
    await fetch(
        chancy,
        "UPDATE {jobs} SET taken_by = %s, attempts = 2 WHERE id = %s RETURNING 1",
        (worker.taken_by, job.id),
    )
    assert await write_and_read() == ("running", 2, worker.taken_by)
    # The holder in the claimed attempt: written.
    await fetch(chancy, "UPDATE {jobs} SET attempts = 1 WHERE id = %s RETURNING 1", (job.id,))
    assert await write_and_read() == ("succeeded", 1, None)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"heartbeat_poll_interval": 0}, "heartbeat_poll_interval"),
        ({"heartbeat_poll_interval": 10, "heartbeat_timeout": 5}, "heartbeat_timeout"),
        ({"shutdown_timeout": -1}, "shutdown_timeout"),
        ({"queue_change_poll_interval": "x"}, "queue_change_poll_interval"),
        ({"tags": "has=gpu"}, "tags"),
        ({"worker_id": ""}, "worker_id"),
    ],
)
async def test_invalid_options_are_refused(chancy, options, field) -> None:
    with pytest.raises(ValueError, match=field):
        Worker(chancy, **options)


@pytest.mark.parametrize("executor", [ASYNC, Chancy.Executor.Threaded])
async def test_stop_under_load_loses_nothing(chancy, executor) -> None:
    await chancy.declare(Queue("q", executor=executor, concurrency=16))
    func = "wjobs.async_record" if executor == ASYNC else "wjobs.sync_record"
    n = 3000
    jobs = [Job(func=func, queue="q", kwargs={"label": "load", "value": i}) for i in range(n)]
    async for _ in chancy.push_many(jobs):
        pass
    worker = Worker(chancy, **FAST)
    await worker.start()
    await eventually(lambda: len(wjobs.RUNS["load"]) >= n // 4, timeout=20)
    with anyio.fail_after(10):
        assert await worker.stop() is True
    counts = dict(await fetch(chancy, "SELECT state, count(*) FROM {jobs} GROUP BY state"))
    assert "running" not in counts
    assert counts.get("succeeded", 0) == len(wjobs.RUNS["load"]), "every run was recorded"
    pending = await fetch(
        chancy, "SELECT count(*) FROM {jobs} WHERE state = 'pending' AND attempts <> 0"
    )
    assert pending == [(0,)], "put-back jobs do not count an attempt"
    async with Worker(chancy, **FAST):
        await eventually(lambda: len(wjobs.RUNS["load"]) >= n, timeout=30)
    assert sorted(wjobs.RUNS["load"]) == list(range(n)), "each job ran exactly once"


async def test_cancelled_under_load_leaves_nothing_running(chancy) -> None:
    await chancy.declare(Queue("q", executor=ASYNC, concurrency=16))
    n = 3000
    jobs = [
        Job(func="wjobs.async_record", queue="q", kwargs={"label": "c", "value": i})
        for i in range(n)
    ]
    async for _ in chancy.push_many(jobs):
        pass
    worker = Worker(chancy, **FAST)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        await eventually(lambda: len(wjobs.RUNS["c"]) >= n // 4, timeout=20)
        tg.cancel_scope.cancel()
    counts = dict(await fetch(chancy, "SELECT state, count(*) FROM {jobs} GROUP BY state"))
    assert "running" not in counts
    assert counts.get("succeeded", 0) > 0
    assert counts.get("succeeded", 0) <= len(set(wjobs.RUNS["c"]))
    bad = await fetch(
        chancy, "SELECT count(*) FROM {jobs} WHERE state = 'pending' AND attempts <> 0"
    )
    assert bad == [(0,)]


async def test_fetch_jobs_and_announce_take_a_plain_psycopg_connection(
    chancy, dsn, anyio_backend
) -> None:
    import psycopg

    queue = await chancy.declare(Queue("q", executor=ASYNC))
    ref = await chancy.push(Job(func="wjobs.async_noop", queue="q"))
    worker = Worker(chancy, worker_id="plain-conn")
    if anyio_backend == "asyncio":
        raw = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    else:
        raw = await anyio.to_thread.run_sync(lambda: psycopg.connect(dsn, autocommit=True))
    try:
        (job,) = await worker.fetch_jobs(queue, raw, up_to=2)
        await worker.announce_worker(raw)
    finally:
        closed = raw.close()
        if closed is not None:
            await closed
    assert job.id == ref.identifier
    assert [w["worker_id"] for w in await chancy.get_all_workers()] == ["plain-conn"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio's task groups are structured
async def test_worker_entered_and_left_in_different_tasks(chancy, anyio_backend) -> None:
    """A pytest-asyncio fixture enters `async with Worker` in one task and leaves in another."""
    await chancy.declare(Queue("q", executor=ASYNC))
    worker = Worker(chancy, **FAST)
    entered = anyio.Event()
    leave = anyio.Event()

    async def enter() -> None:
        await worker.__aenter__()
        entered.set()

    async def leave_it() -> None:
        await leave.wait()
        await worker.__aexit__(None, None, None)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(leave_it)
            async with anyio.create_task_group() as inner:
                inner.start_soon(enter)  # this task ends while the worker runs on
            await entered.wait()
            ref = await chancy.push(
                Job(func="wjobs.async_sleep", queue="q", kwargs={"label": "x", "seconds": 0})
            )
            job = await chancy.wait_for_job(ref, timeout=20)
            assert job is not None
            assert job.state == QueuedJob.State.SUCCEEDED
            leave.set()
    assert await chancy.get_all_workers() == [], "left cleanly from the other task"


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_leaving_from_another_task_says_what_to_do(chancy, anyio_backend) -> None:
    """Trio keeps structured use: the error names both tasks and the way that works."""
    worker = Worker(chancy, **FAST)
    entered, tried = anyio.Event(), anyio.Event()

    async def owner() -> None:
        async with worker:
            entered.set()
            await tried.wait()  # ...and leaves where it entered: that works

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(owner, name="owner-task")
            await entered.wait()
            with pytest.raises(RuntimeError) as caught:
                await worker.__aexit__(None, None, None)
            tried.set()
    message = str(caught.value)
    assert "entered in trio task 'owner-task'" in message
    assert "must begin and end in the same task" in message
    assert "nursery.start(worker.run)" in message
    assert await chancy.get_all_workers() == []
