"""Recovery with real worker processes: a job of a SIGKILLed worker runs again exactly once."""

from __future__ import annotations

from pathlib import Path

import anyio
import psutil
import pytest
from plugin_helpers import eventually, job_row, live_workers

from chancy import Chancy, Job, Queue

pytestmark = pytest.mark.anyio

FAST = {"heartbeat_poll_interval": 0.3, "heartbeat_timeout": 2}
PLUGINS = {
    "leadership": {"poll_interval": 0.3, "timeout": 2},
    "recovery": {"poll_interval": 0.3, "grace": 0},
}


def runs(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def ran_on(path: Path, *worker_pids: int) -> bool:
    """Whether the job ran exactly once in each of these workers, in order (in the worker
    process itself, or in a child of it with the process executor)."""
    lines = runs(path)
    return len(lines) == len(worker_pids) and all(
        str(pid) in line.split(":") for line, pid in zip(lines, worker_pids, strict=True)
    )


@pytest.mark.parametrize("executor", [Chancy.Executor.Threaded, Chancy.Executor.Process])
async def test_job_of_a_killed_worker_runs_again_once_on_the_survivor(
    procs, make_app, tmp_path: Path, executor: str
) -> None:
    app: Chancy = await make_app()
    await app.declare(Queue("work", concurrency=2, executor=executor))
    marker = tmp_path / "runs"
    first_pid = procs.start("doomed", PLUGINS, **FAST)
    await eventually(lambda: live_workers(app), timeout=20)
    ref = await app.push(
        Job(func="pjobs.slow_first", queue="work", kwargs={"path": str(marker)}, max_attempts=3)
    )

    async def started() -> bool:
        return ran_on(marker, first_pid)

    await eventually(started, timeout=20)
    holder = (await live_workers(app))["doomed"]
    row = await job_row(app, ref.identifier)
    assert row is not None
    assert (row["state"], row["taken_by"]) == ("running", holder)

    survivor_pid = procs.start("survivor", PLUGINS, **FAST)
    await eventually(lambda: _has(app, "survivor"), timeout=20)
    procs.kill("doomed")

    job = await app.wait_for_job(ref, timeout=30)
    assert job is not None
    assert job.state == job.State.SUCCEEDED
    assert job.attempts == 2
    assert len(job.errors) == 1
    assert "stopped heartbeating" in job.errors[0]["traceback"]
    assert ran_on(marker, first_pid, survivor_pid), runs(marker)
    # Nothing runs it a third time.
    await anyio.sleep(1)
    assert ran_on(marker, first_pid, survivor_pid), runs(marker)
    if executor == Chancy.Executor.Process:
        # The first run's child process did not outlive its killed worker.
        child = int(runs(marker)[0].split(":")[0])
        assert child != first_pid
        assert _gone(child)


async def test_restarted_worker_with_the_same_id_gets_its_lost_job_back(
    procs, make_app, tmp_path: Path
) -> None:
    app: Chancy = await make_app()
    await app.declare(Queue("work", concurrency=1, executor=Chancy.Executor.Threaded))
    marker = tmp_path / "runs"
    first_pid = procs.start("same", PLUGINS, **FAST)
    await eventually(lambda: live_workers(app), timeout=20)
    ref = await app.push(
        Job(func="pjobs.slow_first", queue="work", kwargs={"path": str(marker)}, max_attempts=2)
    )
    await eventually(lambda: _ran(marker, 1), timeout=20)
    old_identity = (await live_workers(app))["same"]
    procs.kill("same")
    # Restarted at once, under the same id: a new incarnation whose heartbeat is fresh.
    second_pid = procs.start("same", PLUGINS, **FAST)
    job = await app.wait_for_job(ref, timeout=30)
    assert job is not None
    assert job.state == job.State.SUCCEEDED
    assert job.attempts == 2
    assert ran_on(marker, first_pid, second_pid), runs(marker)
    assert (await live_workers(app))["same"] != old_identity


async def test_out_of_attempts_the_lost_job_fails(procs, make_app, tmp_path: Path) -> None:
    app: Chancy = await make_app()
    await app.declare(Queue("work", concurrency=1, executor=Chancy.Executor.Threaded))
    marker = tmp_path / "runs"
    procs.start("doomed", PLUGINS, **FAST)
    await eventually(lambda: live_workers(app), timeout=20)
    ref = await app.push(
        Job(func="pjobs.slow_first", queue="work", kwargs={"path": str(marker)}, max_attempts=1)
    )
    await eventually(lambda: _ran(marker, 1), timeout=20)
    procs.start("survivor", PLUGINS, **FAST)
    await eventually(lambda: _has(app, "survivor"), timeout=20)
    procs.kill("doomed")
    job = await app.wait_for_job(ref, timeout=30)
    assert job is not None
    assert job.state == job.State.FAILED
    assert job.attempts == 1
    assert job.completed_at is not None
    assert len(runs(marker)) == 1


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def _has(app: Chancy, worker_id: str) -> bool:
    return worker_id in await live_workers(app)


async def _ran(path: Path, times: int) -> bool:
    return len(runs(path)) >= times
