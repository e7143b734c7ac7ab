"""ProcessExecutor end to end: a real worker, real PostgreSQL, real child processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from supervisor_helpers import JOBS, MiB

from chancy import Chancy, Job, Limit, Queue, QueuedJob
from chancy.worker import Worker

pytestmark = pytest.mark.anyio

QUEUE = "proc"


@pytest.fixture
async def worker(chancy: Chancy) -> AsyncIterator[Worker]:
    await chancy.declare(
        Queue(
            QUEUE,
            concurrency=2,
            executor=Chancy.Executor.Process,
            executor_options={"maximum_jobs_per_worker": 10, "stop_grace": 0.3},
            polling_interval=1,
        )
    )
    async with Worker(chancy, register_signal_handlers=False, shutdown_timeout=5) as w:
        yield w


def job(func: str, **kwargs: object) -> Job:
    return Job(func=f"{JOBS}.{func}", queue=QUEUE, kwargs=kwargs)


async def finished(chancy: Chancy, job: Job) -> QueuedJob:
    ref = await chancy.push(job)
    done = await chancy.wait_for_job(ref, interval=0.2, timeout=30)
    assert done is not None
    return done


async def test_outcomes_become_job_states(chancy: Chancy, worker: Worker) -> None:
    ok, raised, died, meta = [
        await finished(chancy, j)
        for j in (
            job("returns"),
            job("raises", message="boom"),
            job("hard_exit", code=9).with_max_attempts(2),
            job("set_meta"),
        )
    ]
    assert ok.state == QueuedJob.State.SUCCEEDED
    assert raised.state == QueuedJob.State.FAILED
    assert "ValueError: boom" in raised.errors[-1]["traceback"]
    assert died.state == QueuedJob.State.FAILED
    assert died.attempts == 2
    assert len(died.errors) == 2
    assert "exited with code 9" in died.errors[0]["traceback"]
    assert meta.state == QueuedJob.State.SUCCEEDED
    assert meta.meta["touched"] == meta.id


async def test_limits_fail_the_attempt(chancy: Chancy, worker: Worker) -> None:
    memory = job("allocate", total_mib=600).with_limits([Limit(Limit.Type.MEMORY, 100 * MiB)])
    timed = job("catch_everything").with_limits([Limit(Limit.Type.TIME, 1)])
    mem_done = await finished(chancy, memory.with_max_attempts(2))
    time_done = await finished(chancy, timed)
    assert mem_done.state == QueuedJob.State.FAILED
    assert mem_done.attempts == 2
    assert "memory limit exceeded" in mem_done.errors[0]["traceback"]
    assert "> 100 MiB" in mem_done.errors[1]["traceback"]
    assert time_done.state == QueuedJob.State.FAILED
    assert "time limit exceeded after 1.0 s" in time_done.errors[-1]["traceback"]
    assert (await finished(chancy, job("returns"))).state == QueuedJob.State.SUCCEEDED


async def test_cancel_a_running_job(chancy: Chancy, worker: Worker) -> None:
    ref = await chancy.push(job("catch_everything").with_max_attempts(3))
    with anyio.fail_after(30):
        while (current := await chancy.get_job(ref)) is None or current.state != (
            QueuedJob.State.RUNNING
        ):
            await anyio.sleep(0.05)
    await chancy.cancel_job(ref)
    done = await chancy.wait_for_job(ref, interval=0.2, timeout=30)
    assert done is not None
    assert done.state == QueuedJob.State.FAILED
    assert done.attempts == 1  # cancelled: never retried
    assert "cancel" in done.errors[-1]["traceback"].lower()


async def test_stopping_the_worker_kills_busy_children_and_releases_their_jobs(
    chancy: Chancy, tmp_path: Path
) -> None:
    from supervisor_helpers import gone, wait_for_file

    await chancy.declare(Queue(QUEUE, executor=Chancy.Executor.Process, polling_interval=1))
    pid_file = tmp_path / "pid"
    worker = Worker(chancy, register_signal_handlers=False, shutdown_timeout=0.5)
    await worker.start()
    try:
        ref = await chancy.push(job("wait_forever", pid_file=str(pid_file)))
        pid = int(await wait_for_file(pid_file, 30))
    finally:
        with anyio.fail_after(30):
            await worker.stop()
    assert gone(pid)
    released = await chancy.get_job(ref)
    assert released is not None
    assert released.state == QueuedJob.State.PENDING


async def test_segfault_is_reported_and_logged(
    chancy: Chancy, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING")
    done = await finished(chancy, job("segfault"))
    assert done.state == QueuedJob.State.FAILED
    text = done.errors[-1]["traceback"]
    last = text.splitlines()[-1]
    assert last.startswith("WorkerProcessDied: ")
    assert "killed by signal SIGSEGV" in last
    assert "most recent call first" in text  # the faulthandler dump is kept, above it
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(
        done.id in m
        and "segfault" in m
        and QUEUE in m
        and "WorkerProcessDied" in m
        and "SIGSEGV" in m
        for m in warnings
    ), warnings


@pytest.mark.parametrize("via", ["executor_options", "CHANCY_PASS_ENV"])
async def test_pass_env_reaches_children(
    chancy: Chancy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    import json

    monkeypatch.setenv("CHANCY_T_SETTINGS_DSN", "postgresql://passed")
    monkeypatch.setenv("CHANCY_T_SECRET", "hidden")
    options: dict = {"pass_env": ["CHANCY_T_SETTINGS_DSN"]}
    if via == "CHANCY_PASS_ENV":  # what `chancy-supervisor --pass-env` sets, for every queue
        monkeypatch.setenv("CHANCY_PASS_ENV", "CHANCY_T_SETTINGS_DSN")
        options = {}
    await chancy.declare(
        Queue("env", executor=Chancy.Executor.Process, executor_options=options, polling_interval=1)
    )
    out = tmp_path / "env.json"
    async with Worker(chancy, register_signal_handlers=False, shutdown_timeout=5):
        names = ["CHANCY_T_SETTINGS_DSN", "CHANCY_T_SECRET"]
        ref = await chancy.push(
            Job(func=f"{JOBS}.write_env", queue="env", kwargs={"path": str(out), "names": names})
        )
        done = await chancy.wait_for_job(ref, interval=0.2, timeout=30)
    assert done is not None, done
    assert done.state == QueuedJob.State.SUCCEEDED, done
    seen = json.loads(out.read_text())
    assert seen == {"CHANCY_T_SETTINGS_DSN": "postgresql://passed", "CHANCY_T_SECRET": None}


async def test_a_leaking_job_gets_its_child_replaced(chancy: Chancy) -> None:
    from chancy.metrics import child_restarts

    await chancy.declare(
        Queue(
            "leaky",
            concurrency=1,
            executor=Chancy.Executor.Process,
            executor_options={"maximum_rss_per_worker": 100 * MiB},
            polling_interval=1,
        )
    )
    async with Worker(chancy, register_signal_handlers=False, shutdown_timeout=5) as w:
        rss = []
        for _ in range(3):
            leak = Job(func=f"{JOBS}.leaks", queue="leaky", kwargs={"mib": 60})
            done = await finished(chancy, leak)
            assert done.state == QueuedJob.State.SUCCEEDED
            rss.append(done.result)
        assert child_restarts(w) == {("leaky", "rss"): 1}
    assert rss[0] < 100 * MiB < rss[1]  # the second job crossed it: its child was replaced
    assert rss[2] < 100 * MiB  # the third ran in a fresh child
