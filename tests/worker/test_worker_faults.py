"""Faults: the listener's connection terminated, pooled connections terminated, a failing
database write; the worker recovers and loses nothing."""

from __future__ import annotations

import anyio
import psycopg
import pytest
import wjobs
from support import eventually

from chancy import Chancy, Job, Queue, QueuedJob
from chancy.job import Reference

pytestmark = pytest.mark.anyio

ASYNC = Chancy.Executor.Async


async def push_retrying(chancy: Chancy, job: Job) -> Reference:
    """Push, retrying while the pool hands out connections that were terminated."""
    with anyio.fail_after(10):
        while True:
            try:
                return await chancy.push(job)
            except psycopg.OperationalError:
                await anyio.sleep(0.05)


async def terminate(dsn: str, like: str) -> int:
    def run() -> int:
        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND query LIKE %s",
                (like,),
            ).fetchall()
        return len(rows)

    return await anyio.to_thread.run_sync(run)


async def test_listener_reconnects_and_polls(chancy, dsn, start_worker) -> None:
    # A long polling interval: only a notification or the post-reconnect poll can start a job.
    await chancy.declare(Queue("q", executor=ASYNC, polling_interval=60))
    worker = await start_worker()
    await eventually(lambda: worker.listener.connections == 1)
    ref = await chancy.push(Job(func="wjobs.async_noop", queue="q"))
    assert (await chancy.wait_for_job(ref, timeout=20)).state == QueuedJob.State.SUCCEEDED
    assert await terminate(dsn, f'LISTEN "{chancy.tables.channel}"%') == 1
    ref = await push_retrying(chancy, Job(func="wjobs.async_noop", queue="q"))
    await eventually(lambda: worker.listener.connections == 2, timeout=20)
    job = await chancy.wait_for_job(ref, timeout=20)
    assert job.state == QueuedJob.State.SUCCEEDED
    # Notifications work again: with a 60 s poll, the job starts because of the push notice.
    ref = await chancy.push(Job(func="wjobs.async_noop", queue="q"))
    assert (await chancy.wait_for_job(ref, timeout=20)).state == QueuedJob.State.SUCCEEDED


async def test_terminated_pool_connections_are_survived(chancy, dsn, start_worker) -> None:
    await chancy.declare(Queue("q", executor=ASYNC, polling_interval=0.2))
    await start_worker()
    ref = await chancy.push(Job(func="wjobs.async_noop", queue="q"))
    await chancy.wait_for_job(ref, timeout=5)
    assert await terminate(dsn, "%") >= 1
    refs = [await push_retrying(chancy, Job(func="wjobs.async_noop", queue="q")) for _ in range(5)]
    for ref in refs:
        with anyio.fail_after(15):
            while True:
                try:
                    job = await chancy.wait_for_job(ref, interval=0.2)
                    break
                except psycopg.OperationalError:
                    await anyio.sleep(0.05)
        assert job.state == QueuedJob.State.SUCCEEDED


async def test_failed_update_write_is_retried_not_dropped(chancy, start_worker, caplog) -> None:
    await chancy.declare(Queue("q", executor=ASYNC, polling_interval=0.2))
    worker = await start_worker()
    ref = await chancy.push(
        Job(func="wjobs.async_wait_gate", queue="q", kwargs={"label": "r", "gate": "r"})
    )
    await eventually(lambda: wjobs.RUNS["r"] == ["start"])
    written = worker.batcher.written
    jobs, hidden = chancy.tables.jobs, chancy.tables("jobs_hidden")
    async with chancy.db.connection() as conn:
        await conn.execute(chancy.tables.q("ALTER TABLE {jobs} RENAME TO {hidden}", hidden=hidden))
    try:
        wjobs.GATES["r"].set()
        await eventually(lambda: "writing 1 job updates failed" in caplog.text, timeout=5)
        assert worker.batcher.written == written
    finally:
        async with chancy.db.connection() as conn:
            await conn.execute(
                chancy.tables.q("ALTER TABLE {hidden} RENAME TO {jobs2}", hidden=hidden, jobs2=jobs)
            )
    job = await chancy.wait_for_job(ref, timeout=10)
    assert job.state == QueuedJob.State.SUCCEEDED
