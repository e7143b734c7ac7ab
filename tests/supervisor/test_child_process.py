"""One child process handle: the shutdown ladder climbs only as far as it must."""

from __future__ import annotations

import os

import anyio
import pytest
from supervisor_helpers import gone, packed

from chancy.supervisor import ChildPool, ChildProcess
from chancy.wire import RunJob, Started

pytestmark = pytest.mark.anyio


async def start_busy(tg: anyio.abc.TaskGroup, func: str, **kwargs: object) -> ChildProcess:
    child = await ChildProcess.spawn(tg, handshake_timeout=20)
    job_id, job = packed(func, **kwargs)
    await child.send(RunJob(job_id=job_id, job=job))
    with anyio.fail_after(10):
        assert await child.receive() == Started(job_id=job_id)  # before any job code runs
    await anyio.sleep(0.3)  # let the job install its handlers
    return child


@pytest.mark.parametrize(
    ("func", "kwargs", "returncode"),
    [
        ("returns", {}, 0),  # idle after its job: Shutdown is enough
        ("sleep", {"seconds": 60}, -15),  # busy: Shutdown waits, SIGTERM ends it
        ("ignore_sigterm", {}, -9),  # busy and deaf to SIGTERM: killed
    ],
)
async def test_stop_ladder(func: str, kwargs: dict[str, object], returncode: int) -> None:
    async with anyio.create_task_group() as tg:
        child = await start_busy(tg, func, **kwargs)
        if func == "returns":
            assert (await child.receive()).ok  # type: ignore[union-attr]
        with anyio.fail_after(10):
            code = await child.stop(ask_timeout=0.3, term_timeout=0.3)
        assert code == returncode
        assert gone(child.pid)
        tg.cancel_scope.cancel()


async def test_pool_exit_leaves_no_child() -> None:
    async with ChildPool(3) as pool:
        with anyio.fail_after(20):
            while len(pool.pids) < 3:
                await anyio.sleep(0.01)
        pids = pool.pids
        assert all(not gone(pid) for pid in pids)
        assert all(os.getsid(pid) == pid for pid in pids)  # each leads its own session
    assert all(gone(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="runs once"):
        async with pool:
            pass


async def test_a_stop_interrupts_the_job_import() -> None:
    from chancy.wire import JobDone, StopJob

    async with anyio.create_task_group() as tg:
        child = await ChildProcess.spawn(tg, handshake_timeout=20)
        job_id, job = packed("x")
        job = job.replace(b"supervisor_jobs.x", b"supervisor_slow_import.never_reached")
        await child.send(RunJob(job_id=job_id, job=job))
        await child.send(StopJob(job_id=job_id, reason="stop now", kind="cancelled"))
        with anyio.fail_after(2):  # well before the 3 s import would end
            assert await child.receive() == Started(job_id=job_id)
            done = await child.receive()
        assert isinstance(done, JobDone)
        assert not done.ok
        assert done.error is not None
        assert (done.error.type, done.error.message) == ("JobCancelled", "stop now")
        await child.stop(ask_timeout=1, term_timeout=1)
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("ignore_xcpu", "signal_name"), [(False, "SIGXCPU"), (True, "SIGKILL")], ids=["soft", "hard"]
)
def test_cpu_backstop_kills_a_spinning_process(ignore_xcpu: bool, signal_name: str) -> None:
    """The kernel ends a time-limited job on its own, even one that handles SIGXCPU."""
    import signal
    import subprocess
    import sys

    script = (
        "import signal, chancy.supervisor.child as c\n"
        "c.CPU_GRACE_SECONDS = 0\n"
        f"if {ignore_xcpu}: signal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"
        "c.arm_cpu_limit(0.1)\n"
        "while True: pass\n"
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=30)
    assert done.returncode == -getattr(signal, signal_name)
