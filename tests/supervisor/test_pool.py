"""The child pool with real child processes: outcomes, limits, restarts, hygiene."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import signal
from pathlib import Path

import anyio
import anyio.lowlevel
import psutil
import pytest
from supervisor_helpers import MiB, gone, packed, wait_for_file, wait_gone

from chancy.supervisor import ChildPool, Outcome
from chancy.supervisor._cgroup import Cgroups

pytestmark = pytest.mark.anyio


def pool(size: int = 1, **options: object) -> ChildPool:
    options.setdefault("stop_grace", 0.5)
    return ChildPool(size, **options)  # type: ignore[arg-type]


async def run(p: ChildPool, func: str, *, timeout: float = 20, **kwargs: object) -> Outcome:
    names = ("memory_limit", "time_limit", "max_result_size")
    limits = {k: kwargs.pop(k) for k in names if k in kwargs}
    job_id, job = packed(func, **kwargs)
    with anyio.fail_after(timeout):
        outcome = await p.run_job(job, job_id=job_id, **limits)  # type: ignore[arg-type]
    assert outcome.job_id == job_id
    return outcome


# -- one job per outcome ---------------------------------------------------------------


async def test_returns_and_the_child_is_reused() -> None:
    async with pool() as p:
        first = await run(p, "returns", value=3)
        second = await run(p, "async_job", value=2)
    assert first.ok
    assert second.ok
    assert first.error is None
    assert first.meta == {}
    assert first.pid == second.pid


async def test_the_return_value_comes_back_as_json() -> None:
    async with pool() as p:
        value = await run(p, "returns", value={"a": [1, "é"]}, max_result_size=100)
        awaited = await run(p, "async_job", value=5)
        nothing = await run(p, "pid")
        too_big = await run(p, "returns", value="x" * 200, max_result_size=100)
        not_json = await run(p, "returns_set")
        after = await run(p, "returns", value=1)
    assert value.ok
    assert value.result == '{"a":[1,"é"]}'.encode()
    assert awaited.ok
    assert awaited.result == b"5"
    assert nothing.ok
    assert nothing.result is None
    for outcome, message in [
        (too_big, "result of 202 bytes exceeds the queue's max_result_size of 100 bytes"),
        (not_json, "result of type set is not JSON-serialisable"),
    ]:
        assert not outcome.ok
        assert outcome.result is None
        assert outcome.child_exit is None
        assert outcome.error is not None
        assert (outcome.error.type, outcome.error.message) == ("ResultError", message)
    assert after.ok
    assert after.pid == value.pid


async def test_raises_error_as_data() -> None:
    async with pool() as p:
        outcome = await run(p, "raises", message="boom")
        failed_async = await run(p, "async_job", value=-1)
    assert not outcome.ok
    assert outcome.child_exit is None
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.message) == ("ValueError", "boom")
    assert "in raises" in outcome.error.traceback
    assert "ValueError: boom" in outcome.error_text
    assert failed_async.error is not None
    assert failed_async.error.type == "ValueError"


async def test_sys_exit_is_an_error_and_the_child_survives() -> None:
    async with pool() as p:
        outcome = await run(p, "exits", code=3)
        after = await run(p, "returns")
    assert outcome.error is not None
    assert outcome.error.type == "SystemExit"
    assert outcome.error.message == "3"
    assert outcome.child_exit is None
    assert after.ok
    assert after.pid == outcome.pid


@pytest.mark.parametrize(
    ("func", "message"),
    [
        ("supervisor_jobs.missing", "module 'supervisor_jobs' has no attribute 'missing'"),
        ("no_such_module_here.func", "no_such_module_here"),
        ("supervisor_jobs:missing", "has no attribute 'missing'"),
    ],
)
async def test_a_job_that_cannot_be_imported_fails_with_a_clear_error(
    func: str, message: str
) -> None:
    job_id = "import-error"
    job = json.dumps({"id": job_id, "func": func, "kwargs": {}, "queue": "test"}).encode()
    async with pool() as p:
        with anyio.fail_after(20):
            outcome = await p.run_job(job, job_id=job_id)
        after = await run(p, "returns")  # the child is still fine
    assert not outcome.ok
    assert outcome.child_exit is None
    assert outcome.error is not None
    assert outcome.error.type == "JobImportError"
    assert message in outcome.error.message
    assert after.ok
    assert after.pid == outcome.pid


@pytest.mark.parametrize(
    ("func", "exit_text"),
    [("hard_exit", "exited with code 7"), ("segfault", "killed by signal SIGSEGV")],
)
async def test_child_death_fails_the_job_and_is_replaced(func: str, exit_text: str) -> None:
    async with pool() as p:
        outcome = await run(p, func)
        after = await run(p, "returns")
    assert not outcome.ok
    assert outcome.child_exit == exit_text
    assert outcome.error is not None
    assert outcome.error.type == "WorkerProcessDied"
    assert exit_text in outcome.error.message
    assert after.ok
    assert after.pid != outcome.pid
    if func == "segfault":  # faulthandler's dump from the child reaches the error
        assert "segfault" in outcome.error.traceback


async def test_sigkill_from_outside(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    async with pool() as p, anyio.create_task_group() as tg:
        outcomes: list[Outcome] = []

        async def job() -> None:
            outcomes.append(await run(p, "wait_forever", pid_file=str(pid_file)))

        tg.start_soon(job)
        pid = int(await wait_for_file(pid_file))
        os.kill(pid, signal.SIGKILL)
    [outcome] = outcomes
    assert outcome.child_exit == "killed by signal SIGKILL"
    assert outcome.pid == pid
    assert outcome.error is not None
    assert "killed by signal SIGKILL" in outcome.error.message


async def test_job_receives_its_queued_job_and_meta_comes_back() -> None:
    async with pool() as p:
        job_id, job = packed("set_meta")
        outcome = await p.run_job(job)  # the job id is read from the packed job
    assert outcome.ok, outcome.error
    assert outcome.job_id == job_id
    assert outcome.meta is not None
    assert outcome.meta["touched"] == job_id


# -- limits ----------------------------------------------------------------------------


MEMORY_ERROR = re.compile(r"^memory limit exceeded: \d+ MiB > 100 MiB$")


async def test_memory_limit_kills_the_child() -> None:
    async with pool() as p:
        outcome = await run(p, "allocate", total_mib=600, memory_limit=100 * MiB)
        after = await run(p, "returns")
    assert outcome.error is not None
    assert outcome.error.type == "MemoryLimitExceeded"
    assert MEMORY_ERROR.match(outcome.error.message), outcome.error.message
    assert outcome.child_exit == "killed by signal SIGKILL"
    assert outcome.pid is not None
    assert gone(outcome.pid)
    assert after.ok
    assert after.pid != outcome.pid


async def test_memory_of_a_forked_grandchild_counts(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"
    async with pool() as p:
        outcome = await run(
            p, "fork_and_allocate", total_mib=600, pid_file=str(pid_file), memory_limit=100 * MiB
        )
    assert outcome.error is not None
    assert MEMORY_ERROR.match(outcome.error.message)
    await wait_gone(int(pid_file.read_text()))


async def test_no_limit_no_kill() -> None:
    async with pool() as p:
        outcome = await run(p, "returns", memory_limit=1024 * MiB, time_limit=30)
    assert outcome.ok


@pytest.mark.parametrize(
    "func",
    ["catch_everything", "ignore_sigterm", "stuck_in_c", "spin_in_c"],
)
async def test_time_limit_kills_a_job_that_will_not_stop(func: str) -> None:
    async with pool(monitor_interval=0.05, stop_grace=0.3) as p:
        outcome = await run(p, func, time_limit=0.5)
        after = await run(p, "returns")
    assert outcome.error is not None
    assert outcome.error.type == "TimeLimitExceeded"
    assert outcome.error.message == "time limit exceeded after 0.5 s"
    if func == "catch_everything":
        # It swallows the stop almost always; should the exception land on the one bytecode
        # outside its try blocks, it ends by itself instead. Either way it did not escape.
        assert outcome.child_exit in ("killed by signal SIGKILL", None)
    else:
        assert outcome.child_exit == "killed by signal SIGKILL"
    assert outcome.pid is not None
    assert gone(outcome.pid)
    assert after.ok
    assert after.pid != outcome.pid


@pytest.mark.parametrize("func", ["sleep", "async_sleep"])
async def test_time_limit_raises_inside_a_cooperative_job(func: str) -> None:
    async with pool() as p:
        outcome = await run(p, func, seconds=30, time_limit=0.3)
        after = await run(p, "returns")
    assert outcome.error is not None
    assert outcome.error.type == "TimeLimitExceeded"
    assert outcome.error.message == "time limit exceeded after 0.3 s"
    assert "TimeLimitExceeded" in outcome.error.traceback
    if func == "sleep":
        assert "in sleep" in outcome.error.traceback
    assert outcome.child_exit is None  # it stopped by itself
    assert after.pid != outcome.pid  # but a time-limited child is never reused


async def test_time_limit_arms_a_hard_rlimit_cpu() -> None:
    async with pool() as p:
        limited = await run(p, "set_meta", time_limit=2)
        free = await run(p, "set_meta")
    assert limited.meta is not None
    assert free.meta is not None
    soft, hard = limited.meta["rlimit_cpu"]
    assert 2 < soft < 2 * os.cpu_count() + 30
    assert hard == soft + 1
    assert free.meta["rlimit_cpu"] == [-1, -1]  # a fresh child: no leftover limit
    assert limited.meta["rlimit_core"] == [0, 0]


# -- cancel ----------------------------------------------------------------------------


@pytest.mark.parametrize(("func", "child_exit"), [("sleep", None), ("catch_everything", "kill")])
async def test_cancel(func: str, child_exit: str | None) -> None:
    job_id, job = packed(func, seconds=60) if func == "sleep" else packed(func)
    outcomes: list[Outcome] = []
    async with pool(stop_grace=0.3) as p:
        assert await p.cancel("not-running") is False
        async with anyio.create_task_group() as tg:

            async def runner() -> None:
                outcomes.append(await p.run_job(job, job_id=job_id))

            tg.start_soon(runner)
            with anyio.fail_after(20):
                while job_id not in p.running_jobs:
                    await anyio.sleep(0.01)
                await anyio.sleep(0.2)  # let the job get going
                assert await p.cancel(job_id)
        after = await run(p, "returns")
    [outcome] = outcomes
    assert outcome.error is not None
    assert outcome.error.type == "JobCancelled"
    if child_exit is None:
        assert outcome.child_exit is None  # stopped by the exception, no kill needed
    else:  # see test_time_limit_kills_a_job_that_will_not_stop
        assert outcome.child_exit in ("killed by signal SIGKILL", None)
    assert after.ok
    assert after.pid != outcome.pid


async def test_cancel_kills_a_job_without_limits_that_will_not_stop() -> None:
    # A job without limits runs with no monitor; the cancel must start one for the grace.
    job_id, job = packed("stuck_in_c")
    outcomes: list[Outcome] = []
    async with pool(stop_grace=0.3) as p:
        async with anyio.create_task_group() as tg:

            async def runner() -> None:
                outcomes.append(await p.run_job(job, job_id=job_id))

            tg.start_soon(runner)
            with anyio.fail_after(20):
                while job_id not in p.running_jobs:
                    await anyio.sleep(0.01)
                await anyio.sleep(0.2)  # let the job get stuck
                assert await p.cancel(job_id)
            with anyio.fail_after(10):
                while not outcomes:
                    await anyio.sleep(0.01)
        after = await run(p, "returns")
    [outcome] = outcomes
    assert outcome.error is not None
    assert outcome.error.type == "JobCancelled"
    assert outcome.child_exit == "killed by signal SIGKILL"
    assert gone(outcome.pid)
    assert after.ok
    assert after.pid != outcome.pid


async def test_cancel_right_after_submit(tmp_path: Path) -> None:
    """A stop racing the job's start (before, during or just after its import) stops it
    without a kill: raised as the job starts, or inside it."""
    job_id, job = packed("wait_forever", pid_file=str(tmp_path / "ran"))
    async with pool() as p:
        with anyio.fail_after(20):
            while not p.pids:  # a warm child, so the job goes out at once
                await anyio.sleep(0.01)
            async with anyio.create_task_group() as tg:
                outcomes: list[Outcome] = []

                async def runner() -> None:
                    outcomes.append(await p.run_job(job, job_id=job_id))

                tg.start_soon(runner)
                while job_id not in p.running_jobs:
                    await anyio.lowlevel.checkpoint()
                assert await p.cancel(job_id)
    [outcome] = outcomes
    assert outcome.error is not None
    assert outcome.error.type == "JobCancelled"
    assert outcome.child_exit is None  # no kill was needed


async def test_cancel_a_job_still_waiting_for_a_child(tmp_path: Path) -> None:
    first_id, first = packed("sleep", seconds=60)
    waiting_id, waiting = packed("wait_forever", pid_file=str(tmp_path / "ran"))
    outcomes: dict[str, Outcome] = {}
    async with pool(1) as p:

        async def runner(job_id: str, job: bytes) -> None:
            outcomes[job_id] = await p.run_job(job, job_id=job_id)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(runner, first_id, first)
                while first_id not in p.running_jobs:
                    await anyio.sleep(0.01)
                tg.start_soon(runner, waiting_id, waiting)
                await anyio.sleep(0.1)
                assert await p.cancel(waiting_id)  # queued behind the first job
                assert await p.cancel(first_id)
    assert outcomes[waiting_id].error is not None
    assert outcomes[waiting_id].error.type == "JobCancelled"
    assert not (tmp_path / "ran").exists()  # it never started
    assert outcomes[first_id].error is not None
    assert outcomes[first_id].error.type == "JobCancelled"


async def test_cancelled_caller_kills_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    async with pool() as p:
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(run, p, "wait_forever", pid_file=str(pid_file)))
            pid = int(await wait_for_file(pid_file))
            tg.cancel_scope.cancel()
        assert gone(pid)
        assert (await run(p, "returns")).ok


# -- restarts, output, garbage ---------------------------------------------------------


async def test_restart_after_maximum_jobs() -> None:
    async with pool(maximum_jobs_per_worker=2) as p:
        pids = [(await run(p, "returns")).pid for _ in range(6)]
        assert p.restarts == {"recycled": 3}  # counted for chancy_child_restarts_total
    assert pids[0] == pids[1]
    assert pids[2] == pids[3]
    assert pids[4] == pids[5]
    assert len({pids[0], pids[2], pids[4]}) == 3


async def test_a_child_over_its_rss_threshold_is_replaced_after_its_job() -> None:
    async with pool(maximum_rss_per_worker=100 * MiB) as p:
        first = await run(p, "leaks", mib=60)  # ~80 MiB: under
        second = await run(p, "leaks", mib=60)  # ~140 MiB: over, replaced after the job
        assert p.restarts == {"rss": 1}  # counted for chancy_child_restarts_total{reason="rss"}
        third = await run(p, "leaks", mib=1)
        await wait_gone(second.pid)
    assert first.ok
    assert second.ok  # the job that crossed the threshold still succeeded
    assert json.loads(first.result or b"0") < 100 * MiB < json.loads(second.result or b"0")
    assert first.pid == second.pid != third.pid
    assert json.loads(third.result or b"0") < 100 * MiB  # a fresh child: the leak is gone


def test_the_rss_threshold_is_validated() -> None:
    for bad in (0, -1, 1.5, True, "100"):
        with pytest.raises(ValueError, match="maximum_rss_per_worker"):
            ChildPool(1, maximum_rss_per_worker=bad)  # type: ignore[arg-type]


async def test_print_does_not_break_the_channel(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chancy.supervisor")
    async with pool() as p:
        printed = await run(p, "prints", text="hello from the job")
        after = await run(p, "returns")
        with anyio.fail_after(5):
            while "to stderr" not in caplog.text:
                await anyio.sleep(0.01)
    assert printed.ok
    assert after.ok
    assert after.pid == printed.pid
    assert f"child {printed.pid}, job {printed.job_id}: hello from the job" in caplog.text


@pytest.mark.parametrize(
    ("func", "message"),
    [("write_garbage", "undecodable"), ("write_oversized_header", "exceeds the maximum")],
)
async def test_garbage_on_the_pipe_ends_that_child_only(func: str, message: str) -> None:
    async with pool(2) as p:
        async with anyio.create_task_group() as tg:
            others: list[Outcome] = []

            async def other() -> None:
                others.append(await run(p, "sleep", seconds=1.0))

            tg.start_soon(other)
            bad = await run(p, func)
        after = await run(p, "returns")
    assert bad.error is not None
    assert bad.error.type == "ProtocolError"
    assert message in bad.error.message
    assert bad.child_exit is not None
    assert bad.pid is not None
    assert gone(bad.pid)
    [other_outcome] = others
    assert other_outcome.ok
    assert other_outcome.pid != bad.pid
    assert after.ok


# -- initializer, environment, hygiene -------------------------------------------------


async def test_initializer_runs_once_per_child(tmp_path: Path) -> None:
    log = tmp_path / "init.log"
    options = {"extra_env": {"CHANCY_TEST_INIT_LOG": str(log)}, "maximum_jobs_per_worker": 2}
    async with pool(initializer="supervisor_jobs:initializer", **options) as p:
        outcomes = [await run(p, "init_count") for _ in range(4)]
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    runs = log.read_text().split()
    assert len(runs) == len(set(runs))  # once per child
    assert {str(o.pid) for o in outcomes} <= set(runs)


async def test_failing_initializer_fails_the_job_clearly() -> None:
    async with pool(initializer="supervisor_jobs.failing_initializer") as p:
        outcome = await run(p, "returns")
    assert outcome.error is not None
    assert outcome.error.type == "ChildStartError"
    assert "initializer exploded" in outcome.error.message


async def test_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = ["CHANCY_DSN", "CHANCY_TEST_DSN", "PGPASSWORD", "DATABASE_URL", "MY_API_KEY"]
    secrets += ["GITHUB_TOKEN", "app_secret", "DB_PASSWORD"]
    for name in [*secrets, "HARMLESS_SETTING"]:
        monkeypatch.setenv(name, "value")
    async with pool() as p:
        outcome = await run(p, "set_meta")
        env_outcome = await p.run_job(
            packed("environment", names=[*secrets, "HARMLESS_SETTING"])[1]
        )
    assert env_outcome.ok
    assert outcome.meta is not None
    assert outcome.meta["sid_is_pid"] is True
    # stdin, stdout, stderr, the channel and the directory being listed: nothing inherited.
    assert len(outcome.meta["fds"]) <= 5, outcome.meta["fds"]


async def test_environment_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from chancy.supervisor._env import child_environment, is_secret

    for name in ["CHANCY_DSN", "PGHOST", "X_SECRET", "Token", "DATABASE_URL", "ANY_DSN"]:
        assert is_secret(name), name
    for name in ["HOME", "PATH", "LANG", "CHANCY_LOG_LEVEL"]:
        assert not is_secret(name), name
    env = child_environment(["/a", "", "/b"], base={"PGUSER": "x", "HOME": "/h"})
    assert env["PYTHONPATH"] == f"/a:{os.getcwd()}:/b"
    assert env["HOME"] == "/h"
    assert "PGUSER" not in env


async def test_mixed_load_leaks_nothing() -> None:
    """Many concurrent callers, every kind of ending: each gets its outcome, and afterwards
    no child process and no descriptor of the pool remains."""
    me = psutil.Process()
    fds_before = me.num_fds()
    kinds = [
        ("returns", {}, None),
        ("raises", {}, "ValueError"),
        ("hard_exit", {}, "WorkerProcessDied"),
        ("allocate", {"memory_limit": 100 * MiB}, "MemoryLimitExceeded"),
        ("prints", {}, None),
    ]
    results: list[tuple[str | None, Outcome]] = []
    async with pool(2, maximum_jobs_per_worker=3) as p:

        async def caller(offset: int) -> None:
            for i in range(5):
                func, kwargs, expected = kinds[(offset + i) % len(kinds)]
                results.append((expected, await run(p, func, **kwargs)))  # type: ignore[arg-type]

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for offset in range(4):
                    tg.start_soon(caller, offset)
    assert len(results) == 20
    for expected, outcome in results:
        assert (outcome.error.type if outcome.error else None) == expected, outcome
    with anyio.fail_after(5):
        while me.children() or me.num_fds() > fds_before:
            await anyio.sleep(0.01)


async def test_a_child_that_cannot_start_explains_why(tmp_path: Path) -> None:
    fake = tmp_path / "chancy"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise RuntimeError('shadowed chancy package')\n")
    async with pool(extra_env={"PYTHONPATH": str(tmp_path)}) as p:
        outcome = await run(p, "returns")
    assert outcome.error is not None
    assert outcome.error.type == "ChildStartError"
    assert "exited with code 1" in outcome.error.message
    assert "shadowed chancy package" in outcome.error.message


# -- replacements spawned ahead ------------------------------------------------------------


def child_pids() -> set[int]:
    """This process's child worker processes (not the watchdog, nor the fork server, whose
    children, forked from it, are the workers)."""
    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = proc.cmdline()
            fresh = "chancy.supervisor.child" in cmdline
            forked = "chancy.supervisor._forkserver" in cmdline and proc.ppid() != os.getpid()
            if (fresh or forked) and not gone(proc.pid):
                found.add(proc.pid)
        except psutil.Error:
            continue
    return found


async def wait_children(count: int, timeout: float = 20.0) -> set[int]:
    with anyio.fail_after(timeout):
        while len(pids := child_pids()) != count:
            await anyio.sleep(0.01)
    return pids


async def test_replacement_is_spawned_while_the_last_job_runs(tmp_path: Path) -> None:
    async with pool(maximum_jobs_per_worker=2) as p:
        first = await run(p, "returns")
        job_id, job = packed("wait_forever", pid_file=str(tmp_path / "pid"))
        outcomes: list[Outcome] = []

        async def last_job() -> None:
            outcomes.append(await p.run_job(job, job_id=job_id))

        async with anyio.create_task_group() as tg:
            tg.start_soon(last_job)
            await wait_for_file(tmp_path / "pid")
            # The child's last job runs: its successor is started meanwhile, not after.
            (spare,) = await wait_children(2) - {first.pid}
            assert not outcomes
            assert p.pids == [first.pid]
            assert await p.cancel(job_id)
        after = await run(p, "returns")
    assert outcomes[0].pid == first.pid
    assert outcomes[0].error is not None
    assert after.ok
    assert after.pid == spare
    await wait_gone(first.pid)
    await wait_gone(spare)


async def test_an_unused_replacement_is_stopped_after_spare_linger() -> None:
    async with pool(maximum_jobs_per_worker=3, spare_linger=0.2) as p:
        # A slow spawn, as far as the pool knows: two jobs left are then close enough to
        # start the replacement whatever the machine's load (a fork is fast, a loaded
        # machine's jobs slow: the pace rule alone would make this test timing-dependent).
        p._spawn_seconds = 10.0
        first = await run(p, "returns")
        second = await run(p, "returns")  # two jobs in quick succession: one left, foresee
        (spare,) = await wait_children(2) - {first.pid}
        await wait_gone(spare)  # not taken within spare_linger
        assert p.pids == [first.pid]
        third = await run(p, "returns")
        fourth = await run(p, "returns")
    assert first.pid == second.pid == third.pid
    assert fourth.pid not in (first.pid, spare)
    await wait_gone(fourth.pid)


async def test_no_replacement_outlives_the_pool(tmp_path: Path) -> None:
    async with pool(maximum_jobs_per_worker=2, spare_linger=60) as p:
        first = await run(p, "returns")
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(run, p, "wait_forever", pid_file=str(tmp_path / "p")))
            seen = await wait_children(2)
            tg.cancel_scope.cancel()
    assert first.pid in seen
    for pid in seen:
        await wait_gone(pid)


# -- dead, stuck and lying children -----------------------------------------------------


async def test_an_idle_child_killed_from_outside_is_reaped_and_replaced() -> None:
    async with pool(idle_check_interval=0.1) as p:
        with anyio.fail_after(20):
            while not p.pids:
                await anyio.sleep(0.01)
        (victim,) = p.pids
        os.kill(victim, signal.SIGKILL)
        with anyio.fail_after(5):  # noticed while idle: no job had to come first
            while p.pids in ([], [victim]):
                await anyio.sleep(0.01)
        (fresh,) = p.pids
        with pytest.raises(psutil.NoSuchProcess):  # reaped: not even a zombie
            psutil.Process(victim).status()
        outcome = await run(p, "returns")
    assert outcome.ok
    assert outcome.pid == fresh


async def test_a_job_handed_to_a_stuck_child_goes_to_a_fresh_one_uncharged() -> None:
    """A child that cannot take the job (here: stopped) never acknowledges it; the job is
    given to a fresh child and succeeds there, as if nothing had happened."""
    async with pool(idle_check_interval=60, start_timeout=0.5) as p:
        with anyio.fail_after(20):
            while not p.pids:
                await anyio.sleep(0.01)
        (stuck,) = p.pids
        os.kill(stuck, signal.SIGSTOP)
        outcome = await run(p, "returns", value=5)
        await wait_gone(stuck)
    assert outcome.ok
    assert outcome.error is None
    assert outcome.pid != stuck


async def test_a_job_handed_to_a_dead_child_goes_to_a_fresh_one_uncharged() -> None:
    async with pool(idle_check_interval=60) as p:
        with anyio.fail_after(20):
            while not p.pids:
                await anyio.sleep(0.01)
        (dead,) = p.pids
        os.kill(dead, signal.SIGKILL)  # and the job follows at once, before anyone notices
        outcome = await run(p, "returns", value=5)
    assert outcome.ok
    assert outcome.pid != dead


async def test_a_fake_done_frame_never_charges_the_next_job() -> None:
    """A job writes its own "done" frame and runs on: the child is stuck on it, so the next
    job does not start there; it runs on a fresh child and succeeds."""
    async with pool(start_timeout=1) as p:
        liar = await run(p, "fake_done")
        honest = await run(p, "returns", value=1)
        await wait_gone(liar.pid)  # type: ignore[arg-type]
    assert honest.ok
    assert honest.error is None
    assert honest.pid != liar.pid


async def test_a_truncated_frame_fails_its_job_and_only_its_job() -> None:
    async with pool(frame_timeout=0.5) as p:
        bad = await run(p, "write_truncated_frame")
        after = await run(p, "returns")
    assert bad.error is not None
    assert bad.error.type == "ProtocolError"
    assert "incomplete frame: 10 of 1000 payload bytes after 0.5 s" in bad.error.message
    assert bad.child_exit is not None
    assert gone(bad.pid)
    assert after.ok
    assert after.pid != bad.pid


# -- nothing a job starts outlives it (cgroups) -----------------------------------------


def _cgroups_available() -> bool:
    probe = Cgroups.detect()
    if probe is not None:
        probe.close()  # only a probe: leave no cgroup behind
    return probe is not None


needs_cgroups = pytest.mark.skipif(
    not _cgroups_available(),
    reason="no cgroup can be made here (needs root or a delegated cgroup subtree)",
)


@needs_cgroups
async def test_a_daemon_that_left_the_session_dies_with_its_killed_job(tmp_path: Path) -> None:
    pidfile = str(tmp_path / "daemon.pid")
    async with pool(stop_grace=0.3) as p:
        assert p.cgroups is not None
        outcome = await run(p, "daemon_then_hang", pidfile=pidfile, time_limit=1)
    assert outcome.error is not None
    assert outcome.error.type == "TimeLimitExceeded"
    daemon = int(Path(pidfile).read_text())
    assert psutil.Process(daemon).ppid() != outcome.pid if not gone(daemon) else True
    await wait_gone(daemon)


@needs_cgroups
async def test_a_daemon_left_by_a_job_that_returned_is_killed(tmp_path: Path) -> None:
    pidfile = str(tmp_path / "daemon.pid")
    async with pool() as p:
        first = await run(p, "daemon_then_return", pidfile=pidfile)
        daemon = int(Path(pidfile).read_text())
        await wait_gone(daemon)  # killed as the job ended, before the next one
        second = await run(p, "returns")
    assert first.ok
    assert second.ok
    assert second.pid == first.pid


@needs_cgroups
@pytest.mark.parametrize(
    ("pace", "message"),
    [
        (0.01, r"memory limit exceeded: 1\d\d MiB > 100 MiB"),  # the monitor sees the tmpfs
        (0.0, r"memory limit exceeded: (1\d\d MiB > 100 MiB|over 100 MiB, the kernel)"),
    ],
    ids=["monitor", "faster-than-the-monitor"],
)
async def test_tmpfs_pages_count_against_the_memory_limit(pace: float, message: str) -> None:
    """Pages written into /dev/shm are no process's RSS; the child's cgroup is charged."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm tmpfs here")
    path = shm / f"chancy-test-{os.getpid()}"
    try:
        async with pool(monitor_interval=0.05) as p:
            outcome = await run(
                p, "fill_shm", path=str(path), mib=300, pace=pace, memory_limit=100 * MiB
            )
    finally:
        path.unlink(missing_ok=True)
    assert outcome.error is not None
    assert outcome.error.type == "MemoryLimitExceeded"
    assert re.search(message, outcome.error.message), outcome.error.message


@pytest.mark.skipif(os.geteuid() != 0, reason="a private /dev/shm needs root (CAP_SYS_ADMIN)")
async def test_a_killed_jobs_dev_shm_files_go_with_it(caplog: pytest.LogCaptureFixture) -> None:
    """Each child has a /dev/shm of its own (a tmpfs in its own mount namespace): what a job
    leaves there is never seen by the host, and is freed when the child's tree is gone."""
    caplog.set_level(logging.INFO, logger="chancy.supervisor")
    name = f"chancy-test-shm-{os.getpid()}"
    async with pool(stop_grace=0.2) as p:
        outcome = await run(p, "shm_then_hang", name=name, time_limit=1)
    assert outcome.error is not None
    assert outcome.error.type == "TimeLimitExceeded"
    assert not Path(f"/dev/shm/{name}").exists()  # never in the host's /dev/shm
    ours = os.readlink("/proc/self/ns/mnt")
    line = next(
        r.getMessage() for r in caplog.records if f"wrote /dev/shm/{name}" in r.getMessage()
    )
    assert ours not in line  # the child wrote it in a mount namespace of its own
    await wait_gone(outcome.pid)  # type: ignore[arg-type]
