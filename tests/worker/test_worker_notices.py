"""Every NOTIFY stays under PostgreSQL's 8000-byte limit, so none can abort its transaction."""

from __future__ import annotations

import anyio
import pytest
import wjobs
from support import eventually, fetch

from chancy import Chancy, Job, Queue, QueuedJob
from chancy._sql import MAX_NOTICE_BYTES, event
from chancy.plugins.recovery import rescue_jobs

pytestmark = pytest.mark.anyio

LONG = [f"{i:03d}-" + "q" * 96 for i in range(100)]  # 100 queues, 100-character names


def test_payloads_are_bounded_by_construction() -> None:
    assert len(event("pushed", q=LONG).encode()) <= MAX_NOTICE_BYTES
    assert event("pushed", q=LONG) == '{"t":"pushed","q":null}'  # wake every queue
    assert event("pushed", q=["a", "b"]) == '{"t":"pushed","q":["a","b"]}'
    assert event("plugin.big", blob="é" * 5000) == '{"t":"plugin.big","overflow":true}'


async def test_a_push_spanning_many_long_named_queues_commits_and_wakes(
    chancy: Chancy, start_worker
) -> None:
    served = LONG[42]
    # Polling once a minute: only the (fallback) notice can make the job start soon.
    await chancy.declare(Queue(served, executor=Chancy.Executor.Async, polling_interval=60))
    worker = await start_worker()
    # The queue's fetcher is up and has made its first (empty) claim: from here on only a
    # notice can start the job before the next poll, a minute away.
    await eventually(lambda: served in worker.executors, timeout=30)
    await anyio.sleep(0.5)
    jobs = [Job(func="wjobs.async_record", queue=name, kwargs={"label": name}) for name in LONG]
    refs = [ref async for batch in chancy.push_many(jobs) for ref in batch]
    assert len(refs) == 100
    with anyio.fail_after(40):
        job = await chancy.wait_for_job(refs[42], timeout=40)
    assert job is not None
    assert job.state == QueuedJob.State.SUCCEEDED
    assert wjobs.RUNS[served] == [None]


async def test_recovery_of_jobs_spanning_many_long_named_queues(chancy: Chancy) -> None:
    jobs = [Job(func="wjobs.async_noop", queue=name, max_attempts=2) for name in LONG]
    refs = [ref async for batch in chancy.push_many(jobs) for ref in batch]
    async with chancy.db.connection() as conn:
        await conn.execute(
            chancy.tables.q(
                "UPDATE {jobs} SET state = 'running', taken_by = 'gone:1', attempts = 1,"
                " started_at = now() - interval '1 hour'"
            )
        )
    rescued = await rescue_jobs(chancy, grace=0)
    assert len(rescued) == 100
    assert {state for _, _, state in rescued} == {"retrying"}
    rows = await fetch(
        chancy, "SELECT state FROM {jobs} WHERE id = ANY(%s)", ([r.identifier for r in refs],)
    )
    assert {state for (state,) in rows} == {"retrying"}


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # an AsyncCursor needs asyncio
async def test_a_plugin_notice_too_big_to_send_does_not_abort_its_transaction(
    chancy: Chancy, anyio_backend
) -> None:
    async with chancy.pool.connection() as conn, conn.cursor() as cursor:
        await chancy.declare_ex(cursor, Queue("kept"))
        await chancy.notify(cursor, "my.plugin", {"blob": "x" * 20_000})
    assert [q.name for q in await chancy.get_all_queues()] == ["kept"]
