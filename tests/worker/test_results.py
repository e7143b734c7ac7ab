"""A job's return value is stored in its `result`: every executor, real PostgreSQL, no mocks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from support import fetch, job_row

from chancy import Chancy, Job, Queue, QueuedJob
from chancy._result import ResultError, check_max_result_size, encode_result
from chancy.executors.base import executor_class
from chancy.worker import Worker

pytestmark = pytest.mark.anyio

StartWorker = Callable[..., Awaitable[Worker]]

EXECUTORS = {
    "async": Chancy.Executor.Async,
    "threaded": Chancy.Executor.Threaded,
    "process": Chancy.Executor.Process,
}
#: Both kinds of job function run on every executor (sync ones on threads or in a child,
#: coroutine ones on the loop or under asyncio.run in a child).
FLAVOURS = ("sync", "async")

VALUES: list[Any] = [
    {"a": 1, "b": [True, None, 1.5], "c": {"d": "é"}},
    [1, "two", {"three": 3}],
    "text",
    42,
    0,
    False,
    "",
]


@pytest.fixture(params=list(EXECUTORS))
def executor(request: pytest.FixtureRequest) -> str:
    return request.param


async def declare(chancy: Chancy, executor: str, **options: Any) -> str:
    await chancy.declare(
        Queue(
            executor,
            concurrency=2,
            executor=EXECUTORS[executor],
            executor_options=options,
            polling_interval=1,
        )
    )
    return executor


async def run_all(chancy: Chancy, jobs: list[Job]) -> list[QueuedJob]:
    refs = [await chancy.push(job) for job in jobs]
    done = []
    for ref in refs:
        job = await chancy.wait_for_job(ref, interval=0.2, timeout=30)
        assert job is not None
        done.append(job)
    return done


async def test_return_values_are_stored(
    chancy: Chancy, start_worker: StartWorker, executor: str
) -> None:
    queue = await declare(chancy, executor)
    await start_worker()
    cases = [(flavour, value) for flavour in FLAVOURS for value in VALUES]
    jobs = [
        Job(func=f"wjobs.{flavour}_returns", queue=queue, kwargs={"value": value})
        for flavour, value in cases
    ]
    nothing = [Job(func=f"wjobs.{flavour}_returns", queue=queue) for flavour in FLAVOURS]
    odd = Job(func="wjobs.sync_returns_tuple_and_number_keys", queue=queue)
    done = await run_all(chancy, [*jobs, *nothing, odd])

    for (flavour, value), job in zip(cases, done[: len(cases)], strict=True):
        assert job.state == QueuedJob.State.SUCCEEDED, (flavour, value, job.errors)
        assert job.result == value, (flavour, value)
        assert type(job.result) is type(value), (flavour, value)
        assert await job_row(chancy, job.id, "result") == (value,)
    for job in done[len(cases) : len(cases) + 2]:
        assert job.state == QueuedJob.State.SUCCEEDED
        assert job.result is None
        assert await job_row(chancy, job.id, "result IS NULL") == (True,)  # SQL NULL, not 'null'
    # What is stored is the value as JSON reads it back: lists, string keys, no NUL.
    assert done[-1].result == {"pair": [1, "a"], "3": "three", "nul": "a\ufffdb"}
    # get_job and get_jobs read it too.
    assert (await chancy.get_job(done[0].id)).result == VALUES[0]
    assert [j.result for j in await chancy.get_jobs([done[1].id, done[2].id])] == VALUES[1:3]


async def test_a_result_that_is_not_json_fails_the_job(
    chancy: Chancy, start_worker: StartWorker, executor: str
) -> None:
    queue = await declare(chancy, executor)
    await start_worker()
    bad = [
        Job(func=f"wjobs.{flavour}_returns_set", queue=queue, max_attempts=2)
        for flavour in FLAVOURS
    ]
    nested = Job(func="wjobs.sync_returns_nested_bad", queue=queue)
    good = Job(func="wjobs.sync_returns", queue=queue, kwargs={"value": "fine"})
    *failed, nested_done, good_done = await run_all(chancy, [*bad, nested, good])

    for job in failed:
        # A normal failed attempt: retried by the usual rules, then FAILED.
        assert job.state == QueuedJob.State.FAILED
        assert job.attempts == 2
        assert len(job.errors) == 2
        assert all(
            "ResultError: result of type set is not JSON-serialisable" in e["traceback"]
            for e in job.errors
        )
        assert job.result is None
    assert nested_done.state == QueuedJob.State.FAILED
    assert (
        "result of type dict is not JSON-serialisable: it holds a value of type datetime at"
        " ['when'][1]" in nested_done.errors[-1]["traceback"]
    )
    # One bad result fails only its own job.
    assert good_done.state == QueuedJob.State.SUCCEEDED
    assert good_done.result == "fine"


async def test_a_result_over_max_result_size_fails_the_job(
    chancy: Chancy, start_worker: StartWorker, executor: str
) -> None:
    queue = await declare(chancy, executor, max_result_size=100)
    await start_worker()
    # "x" * n is n + 2 bytes of JSON.
    over = [
        Job(func=f"wjobs.{flavour}_returns_text", queue=queue, kwargs={"size": 200})
        for flavour in FLAVOURS
    ]
    at_cap = [
        Job(func=f"wjobs.{flavour}_returns_text", queue=queue, kwargs={"size": 98})
        for flavour in FLAVOURS
    ]
    done = await run_all(chancy, [*over, *at_cap])

    for job in done[:2]:
        assert job.state == QueuedJob.State.FAILED
        assert job.result is None
        assert (
            "ResultError: result of 202 bytes exceeds the queue's max_result_size of 100 bytes"
            in job.errors[-1]["traceback"]
        )
        assert await job_row(chancy, job.id, "result IS NULL") == (True,)
    for job in done[2:]:
        assert job.state == QueuedJob.State.SUCCEEDED
        assert job.result == "x" * 98


async def test_the_sync_twins_read_the_result(chancy: Chancy, start_worker: StartWorker) -> None:
    queue = await declare(chancy, "async")
    await start_worker()
    ref = await chancy.push(
        Job(func="wjobs.async_returns", queue=queue, kwargs={"value": {"k": [1, 2]}})
    )

    def sync_side() -> tuple[Any, Any, Any]:
        with Chancy(chancy.dsn, prefix=chancy.prefix, plugins=[]) as app:
            waited = app.sync_wait_for_job(ref, interval=0.1, timeout=20)
            return waited, app.sync_get_job(ref), app.sync_get_jobs([ref])

    waited, got, listed = await anyio.to_thread.run_sync(sync_side)
    assert waited.state == QueuedJob.State.SUCCEEDED
    assert waited.result == got.result == listed[0].result == {"k": [1, 2]}
    assert got == await chancy.get_job(ref)


async def test_the_migration_goes_down_and_up(chancy: Chancy, start_worker: StartWorker) -> None:
    column = (
        "SELECT data_type FROM information_schema.columns"
        " WHERE table_name = %s AND column_name = 'result'"
    )
    table = chancy.prefix + "jobs"
    assert await fetch(chancy, column, (table,)) == [("jsonb",)]
    queue = await declare(chancy, "async")
    worker = await start_worker()
    ref = await chancy.push(Job(func="wjobs.async_returns", queue=queue, kwargs={"value": 7}))
    assert (await chancy.wait_for_job(ref, interval=0.2, timeout=20)).result == 7
    await worker.stop()

    await chancy.migrate(to_version=4)
    assert (await chancy.schema_versions())["core"] == (4, 6)
    assert await fetch(chancy, column, (table,)) == []
    assert await fetch(chancy, "SELECT count(*) FROM {jobs}") == [(1,)]  # rows stay

    await chancy.migrate()
    assert await fetch(chancy, column, (table,)) == [("jsonb",)]
    job = await chancy.get_job(ref)
    assert job is not None
    assert job.state == QueuedJob.State.SUCCEEDED
    assert job.result is None


def test_messages_and_the_option() -> None:
    mib = 1024 * 1024
    with pytest.raises(ResultError) as raised:
        encode_result("x" * (2 * mib), mib)
    assert str(raised.value) == "result of 2.0 MiB exceeds the queue's max_result_size of 1.0 MiB"
    assert encode_result("x" * (mib - 2), mib) == b'"' + b"x" * (mib - 2) + b'"'
    with pytest.raises(ResultError, match=r"^result of type set is not JSON-serialisable$"):
        encode_result({1, 2})
    with pytest.raises(
        ResultError, match=r"^result of type float is not JSON-serialisable \(nan\)"
    ):
        encode_result(float("nan"))
    with pytest.raises(ResultError, match=r"holds a key of type tuple at \['a'\]"):
        encode_result({"a": {(1, 2): 3}})
    with pytest.raises(ResultError, match="holds a value of type bytes at \\[0\\]"):
        encode_result([b"raw"])
    for executor in Chancy.Executor:
        queue = Queue("q", executor=executor, executor_options={"max_result_size": 10})
        executor_class(queue)  # every executor takes the option
    for wrong in (0, -1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="max_result_size: expected a positive number"):
            check_max_result_size(wrong)
