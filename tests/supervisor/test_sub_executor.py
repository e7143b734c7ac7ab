"""SubInterpreterExecutor: on Python < 3.13 its queue fails to start, the others serve on."""

from __future__ import annotations

import sys

import pytest
from supervisor_helpers import JOBS

from chancy import Chancy, Job, Queue, QueuedJob
from chancy.executors.sub import check_supported
from chancy.worker import Worker

pytestmark = pytest.mark.anyio

OLD_PYTHON = sys.version_info < (3, 13)


@pytest.mark.skipif(not OLD_PYTHON, reason="this Python has sub-interpreter pools")
def test_check_names_the_version_needed() -> None:
    with pytest.raises(RuntimeError, match=r"needs Python 3\.13 or newer.*runs Python 3\.1"):
        check_supported()


@pytest.mark.skipif(not OLD_PYTHON, reason="this Python has sub-interpreter pools")
async def test_queue_fails_to_start_and_the_worker_serves_the_others(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("ERROR")
    await chancy.declare(Queue("sub", executor=Chancy.Executor.SubInterpreter))
    await chancy.declare(Queue("proc", executor=Chancy.Executor.Process))
    stuck = await chancy.push(Job(func=f"{JOBS}.returns", queue="sub"))
    async with Worker(chancy, register_signal_handlers=False, shutdown_timeout=5):
        ref = await chancy.push(Job(func=f"{JOBS}.returns", queue="proc"))
        done = await chancy.wait_for_job(ref, interval=0.2, timeout=30)
    assert done is not None
    assert done.state == QueuedJob.State.SUCCEEDED
    job = await chancy.get_job(stuck)
    assert job is not None
    assert job.state == QueuedJob.State.PENDING
    assert "SubInterpreterExecutor needs Python 3.13 or newer" in caplog.text
    assert "'sub'" in caplog.text


@pytest.mark.skipif(OLD_PYTHON, reason="sub-interpreter pools need Python 3.13+")
async def test_jobs_run_in_sub_interpreters(chancy: Chancy) -> None:
    from chancy import Limit

    await chancy.declare(
        Queue("sub", concurrency=2, executor=Chancy.Executor.SubInterpreter, polling_interval=1)
    )
    jobs = [
        Job(func="supervisor_sub_jobs.ok", queue="sub"),
        Job(func="supervisor_sub_jobs.bad", queue="sub"),
        Job(func="supervisor_sub_jobs.slow", queue="sub").with_limits([Limit(Limit.Type.TIME, 1)]),
        Job(func="supervisor_sub_jobs.not_json", queue="sub"),
    ]
    async with Worker(chancy, register_signal_handlers=False, shutdown_timeout=5):
        refs = [await chancy.push(j) for j in jobs]
        ok, bad, slow, not_json = [
            await chancy.wait_for_job(r, interval=0.2, timeout=30) for r in refs
        ]
    assert ok is not None
    assert ok.state == QueuedJob.State.SUCCEEDED
    assert ok.result == 1
    assert not_json is not None
    assert not_json.state == QueuedJob.State.FAILED
    assert "result of type set is not JSON-serialisable" in not_json.errors[-1]["traceback"]
    assert bad is not None
    assert bad.state == QueuedJob.State.FAILED
    assert "ValueError: nope" in bad.errors[-1]["traceback"]
    assert slow is not None
    assert slow.state == QueuedJob.State.FAILED
    assert "time limit exceeded" in slow.errors[-1]["traceback"]
