"""`chancy-supervisor` as users run it: a real process, real children, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import psutil
import pytest
from support import wait_until

from chancy import Chancy, Job, Queue, QueuedJob

TESTS = Path(__file__).parent


@pytest.fixture
def env(dsn: str, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "CHANCY_CLI_DSN": dsn,
        "CHANCY_CLI_PREFIX": prefix,
        "PYTHONPATH": str(TESTS),
    }


@pytest.fixture
def app(dsn: str, prefix: str) -> Chancy:
    return Chancy(dsn, prefix=prefix, plugins=[])


def run_async(app: Chancy, func: Callable) -> object:
    async def main() -> object:
        async with app:
            return await func()

    return anyio.run(main)


@pytest.fixture
def supervisor(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    procs: list[subprocess.Popen] = []

    def start(*extra: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chancy.supervisor.cli",
                "--app",
                "cliapp:make",
                "--status-file",
                str(tmp_path / "status.json"),
                "--status-interval",
                "0.2",
                "--heartbeat-poll-interval",
                "1",
                "--shutdown-timeout",
                "10",
                *extra,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def status(tmp_path: Path) -> dict | None:
    try:
        return json.loads((tmp_path / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def check(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "chancy.supervisor.cli",
            "--app",
            "cliapp:make",
            "--check",
            "--status-file",
            str(tmp_path / "status.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_bad_app_is_a_one_line_error(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chancy.supervisor.cli", "--app", "nowhere:app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "cannot import 'nowhere'" in result.stderr


def test_unmigrated_database_says_how_to_migrate(supervisor, tmp_path: Path) -> None:
    proc = supervisor()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "migrate" in out.splitlines()[-1]


def test_runs_jobs_checks_health_and_stops_on_sigterm(
    supervisor, app: Chancy, env: dict[str, str], tmp_path: Path
) -> None:
    async def setup() -> list:
        await app.migrate()
        await app.declare(Queue("default", concurrency=2))
        return [
            await app.push(Job.from_func(__import__("jobs").add, kwargs={"a": i, "b": 1}))
            for i in range(10)
        ]

    refs = run_async(app, setup)
    assert check(env, tmp_path).returncode == 1  # nothing runs yet
    proc = supervisor("--allow", "jobs")
    wait_until(
        lambda: status(tmp_path) and len(status(tmp_path)["children"]) == 2,
        what="two warm children",
    )

    async def wait_all() -> list[QueuedJob]:
        return [await app.wait_for_job(ref, timeout=60) for ref in refs]

    done = run_async(app, wait_all)
    assert all(job.state is QueuedJob.State.SUCCEEDED for job in done)
    healthy = check(env, tmp_path)
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.startswith("ok:")
    children = status(tmp_path)["children"]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert not (tmp_path / "status.json").exists()
    wait_until(
        lambda: not any(psutil.pid_exists(pid) for pid in children),
        timeout=10,
        what="children gone",
    )
    result = check(env, tmp_path)
    assert result.returncode == 1
    assert "no status file" in result.stderr


def test_allow_list_refuses_a_row_written_straight_into_the_table(
    supervisor, app: Chancy, tmp_path: Path
) -> None:
    async def setup():
        await app.migrate()
        await app.declare(Queue("default"))
        # What an attacker with write access to the table would do.
        return await app.push(Job(func="os.system", kwargs={"command": "touch /tmp/pwned"}))

    ref = run_async(app, setup)
    proc = supervisor("--allow", "jobs")
    job = run_async(app, lambda: app.wait_for_job(ref, timeout=60))
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert job.state is QueuedJob.State.FAILED
    assert "not in this worker's allow-list" in job.errors[0]["traceback"]
    assert "it was not imported" in job.errors[0]["traceback"]


def test_sigkill_of_the_supervisor_leaves_no_child(supervisor, app: Chancy, tmp_path: Path) -> None:
    run_async(app, lambda: app.migrate())
    run_async(app, lambda: app.declare(Queue("default", concurrency=2)))
    proc = supervisor()
    children = wait_until(
        lambda: (s := status(tmp_path)) and len(s["children"]) == 2 and s["children"],
        what="two warm children",
    )
    proc.kill()
    proc.wait(timeout=10)
    wait_until(
        lambda: not any(psutil.pid_exists(pid) for pid in children),
        timeout=10,
        what="children gone",
    )
