"""The fork server: children forked from a clean template keep a fresh child's guarantees."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import anyio
import psutil
import pytest
from supervisor_helpers import gone, packed, wait_for_file, wait_gone

from chancy.supervisor import ChildPool, Outcome

pytestmark = pytest.mark.anyio


async def run(p: ChildPool, func: str, **kwargs: object) -> Outcome:
    job_id, job = packed(func, **kwargs)
    with anyio.fail_after(20):
        return await p.run_job(job, job_id=job_id)


def template_pid(p: ChildPool) -> int:
    server = p._forkserver
    assert server is not None
    assert server.pid is not None
    return server.pid


async def test_children_are_forked_from_a_clean_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHANCY_DSN", "postgresql://secret@db/app")
    monkeypatch.setenv("MY_API_KEY", "secret")
    async with ChildPool(2, start_method="forkserver") as p:
        first, second = await run(p, "pid"), await run(p, "pid")
        template = psutil.Process(template_pid(p))
        assert "chancy.supervisor._forkserver" in template.cmdline()
        assert template.ppid() == os.getpid()
        assert template.num_threads() == 1  # forking it is safe: no thread holds a lock
        assert os.getsid(template.pid) == template.pid
        environ = Path(f"/proc/{template.pid}/environ").read_bytes().split(b"\0")
        assert not [v for v in environ if v.startswith((b"CHANCY_DSN=", b"MY_API_KEY="))]
        assert not [m for m in template.memory_maps() if "supervisor_jobs" in m.path]
        for pid in p.pids:
            assert psutil.Process(pid).ppid() == template.pid
            assert os.getsid(pid) == pid  # each child leads its own session
        env = await run(p, "environment", names=["CHANCY_DSN", "MY_API_KEY", "HOME"])
    assert first.ok
    assert second.ok
    assert env.ok
    assert env.result is not None
    assert b'"CHANCY_DSN":null' in env.result
    assert b'"MY_API_KEY":null' in env.result
    await wait_gone(template.pid)


async def test_spawn_starts_fresh_interpreters() -> None:
    async with ChildPool(1, start_method="spawn") as p:
        outcome = await run(p, "pid")
        assert p._forkserver is None
        assert outcome.pid is not None
        assert psutil.Process(outcome.pid).ppid() == os.getpid()
        assert "chancy.supervisor.child" in psutil.Process(outcome.pid).cmdline()
    assert outcome.ok


def test_the_start_method_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="start_method"):
        ChildPool(1, start_method="fork")
    monkeypatch.setenv("CHANCY_START_METHOD", "spawn")
    assert ChildPool(1).start_method == "spawn"
    monkeypatch.setenv("CHANCY_START_METHOD", "forkserver")
    assert ChildPool(1).start_method == "forkserver"


async def test_exit_codes_reach_the_outcome() -> None:
    async with ChildPool(1, start_method="forkserver") as p:
        exited = await run(p, "hard_exit", code=7)
        crashed = await run(p, "segfault")
        after = await run(p, "returns")
    assert exited.child_exit == "exited with code 7"
    assert crashed.child_exit == "killed by signal SIGSEGV"
    assert after.ok


async def test_a_dead_template_is_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="chancy.supervisor")
    async with ChildPool(1, start_method="forkserver", idle_check_interval=0.1) as p:
        old = template_pid(p)
        pid_file = tmp_path / "pid"
        async with anyio.create_task_group() as tg:
            busy: list[Outcome] = []

            async def job() -> None:
                busy.append(await run(p, "wait_forever", pid_file=str(pid_file)))

            tg.start_soon(job)
            await wait_for_file(pid_file)
            child = int(pid_file.read_text())
            os.kill(old, signal.SIGKILL)  # its children die with it (PR_SET_PDEATHSIG)
        await wait_gone(child)
        after = await run(p, "pid")
        new = template_pid(p)
        assert after.pid is not None
        assert psutil.Process(after.pid).ppid() == new
    (outcome,) = busy
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.type == "WorkerProcessDied"
    assert outcome.child_exit == "killed by signal SIGKILL"
    assert after.ok
    assert new != old
    assert f"the fork server {old} killed by signal SIGKILL" in caplog.text
    assert "starting a new fork server" in caplog.text
    assert gone(new)


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
async def test_one_job_per_worker_means_a_fresh_process_per_job(method: str) -> None:
    async with ChildPool(1, maximum_jobs_per_worker=1, start_method=method) as p:
        outcomes = [await run(p, "count_calls") for _ in range(3)]
        reused = ChildPool(1, start_method=method)
        async with reused:
            again = [await run(reused, "count_calls") for _ in range(2)]
    assert [o.result for o in outcomes] == [b"1", b"1", b"1"]  # no state from an earlier job
    assert len({o.pid for o in outcomes}) == 3
    assert [o.result for o in again] == [b"1", b"2"]  # (the job does count within a process)


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
async def test_a_forked_child_is_hardened_like_a_fresh_one(method: str) -> None:
    async with ChildPool(1, start_method=method) as p:
        outcome = await run(p, "hygiene")
        contained = p.cgroups is not None
    assert outcome.ok
    assert outcome.result is not None
    seen = json.loads(outcome.result)
    assert seen["pdeathsig"] == signal.SIGKILL
    assert seen["core"] == [0, 0]
    assert seen["sid"] == seen["pid"]
    assert seen["stdin"] == "/dev/null"
    # 0-2, the protocol channel, and the listing's own descriptor: nothing of the template's
    assert len(seen["fds"]) <= 5, seen["fds"]
    if contained:
        assert f"child-{seen['pid']}" in seen["cgroup"]
