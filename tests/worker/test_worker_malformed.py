"""Rows written straight into the tables that do not decode fail alone, at once, by name."""

from __future__ import annotations

import pytest
import wjobs
from support import fetch, job_row

from chancy import Chancy, Job, Queue, QueuedJob

pytestmark = pytest.mark.anyio

DEEP = "[" * 2000 + "]" * 2000  # valid JSON, deeper than Python's json will decode

BAD_ROWS = {
    "negative limit": (
        "limits",
        '[{"type": "memory", "value": -1}]',
        "Limit.value: must be positive",
    ),
    "string limit": ("limits", '[{"type": "time", "value": "30s"}]', "expected a number"),
    "unknown limit": ("limits", '[{"type": "disk", "value": 5}]', "unknown limit type 'disk'"),
    "limits not a list": ("limits", '{"type": "time"}', "limits: TypeError: expected a JSON array"),
    "kwargs too deep": ("kwargs", '{"x": ' + DEEP + "}", "kwargs: RecursionError"),
    "kwargs not an object": ("kwargs", "[1, 2]", "kwargs: TypeError: expected a JSON object"),
}


@pytest.mark.parametrize("executor", [Chancy.Executor.Async, Chancy.Executor.Process])
async def test_a_malformed_row_fails_alone_and_its_batch_runs(
    chancy: Chancy, start_worker, executor
) -> None:
    executor_options = (
        {"maximum_jobs_per_worker": 1000} if executor == Chancy.Executor.Process else {}
    )
    await chancy.declare(
        Queue("q", executor=executor, concurrency=4, executor_options=executor_options)
    )
    func = "wjobs.async_noop" if executor == Chancy.Executor.Async else "wjobs.sync_noop"
    good = [await chancy.push(Job(func=func, queue="q")) for _ in range(3)]
    bad = {}
    for label, (column, value, _) in BAD_ROWS.items():
        ref = await chancy.push(Job(func=func, queue="q", max_attempts=2))
        async with chancy.db.connection() as conn:
            await conn.execute(
                chancy.tables.q(f"UPDATE {{jobs}} SET {column} = %s::jsonb WHERE id = %s"),
                (value, ref.identifier),
            )
        bad[label] = ref
    await start_worker()  # all of them are claimed together, in one batch
    for ref in good:
        job = await chancy.wait_for_job(ref, timeout=30)
        assert job is not None
        assert job.state == QueuedJob.State.SUCCEEDED
    for label, ref in bad.items():
        _, _, message = BAD_ROWS[label]
        state, errors = await job_row(chancy, ref.identifier, "state", "errors")
        while state in ("pending", "running", "retrying"):  # attempts left: it comes round
            job = await chancy.wait_for_job(ref, timeout=30)
            state, errors = job.state.value, job.errors  # type: ignore[union-attr]
        assert state == "failed", label
        assert len(errors) == 2, label  # the normal retry path: both attempts used
        last = errors[-1]["traceback"].splitlines()[-1]
        assert last.startswith("chancy.errors.InvalidJobError: malformed job row: "), label
        assert message in last, (label, last)
    # The bad rows' own data is left as written (nothing but their outcome is changed).
    (limits,) = await job_row(chancy, bad["negative limit"].identifier, "limits")
    assert limits == [{"type": "memory", "value": -1}]


async def test_a_malformed_queue_row_is_skipped_and_the_others_served(
    chancy: Chancy, start_worker, caplog
) -> None:
    await chancy.declare(Queue("good", executor=Chancy.Executor.Async))
    await chancy.declare(Queue("broken", executor=Chancy.Executor.Async))
    async with chancy.db.connection() as conn:
        await conn.execute(
            chancy.tables.q("UPDATE {queues} SET concurrency = -3 WHERE name = 'broken'")
        )
    assert [q.name for q in await chancy.get_all_queues()] == ["good"]
    assert "queue 'broken' is skipped: its row is malformed" in caplog.text
    await start_worker()
    ref = await chancy.push(Job(func="wjobs.async_record", queue="good", kwargs={"label": "g"}))
    job = await chancy.wait_for_job(ref, timeout=20)
    assert job is not None
    assert job.state == QueuedJob.State.SUCCEEDED
    assert wjobs.RUNS["g"] == [None]
    assert await fetch(chancy, "SELECT name FROM {queues} ORDER BY name") == [
        ("broken",),
        ("good",),
    ]
