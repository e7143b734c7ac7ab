"""`chancy --app module:attribute ...`, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


@pytest.fixture
def cli(dsn: str, prefix: str):
    env = {
        **os.environ,
        "CHANCY_CLI_DSN": dsn,
        "CHANCY_CLI_PREFIX": prefix,
        "PYTHONPATH": str(TESTS),
    }

    def run(*args: str, app: str = "cliapp:make") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "chancy.cli", "--app", app, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def test_bad_app_is_a_one_line_error(cli) -> None:
    for app, message in [
        ("nocolon", "expected module:attribute"),
        ("no_such_mod:app", "cannot import"),
        ("cliapp:missing", "has no attribute"),
        ("cliapp:not_an_app", "is not a Chancy app"),
    ]:
        result = cli("misc", "migrate", app=app)
        assert result.returncode == 2, result
        assert result.stderr.count("\n") == 1 and message in result.stderr


def test_migrate_queues_and_jobs(cli) -> None:
    assert cli("misc", "check-schema").returncode == 1
    result = cli("misc", "migrate")
    assert result.returncode == 0, result.stderr
    assert "core: version 4 of 4" in result.stdout
    assert cli("misc", "check-schema").returncode == 0
    declared = cli(
        "queue",
        "declare",
        "mail",
        "--concurrency",
        "3",
        "--executor",
        "chancy.executors.asyncex.AsyncExecutor",
    )
    assert declared.returncode == 0, declared.stderr
    assert json.loads(declared.stdout)["concurrency"] == 3
    assert cli("queue", "pause", "mail").returncode == 0
    listed = json.loads(cli("queue", "list", "--json").stdout)
    assert [(q["name"], q["state"]) for q in listed] == [("mail", "paused")]
    assert cli("queue", "resume", "mail").returncode == 0
    assert "active" in cli("queue", "list").stdout
    pushed = cli("job", "push", "jobs.add", "--queue", "mail", "--kwargs", '{"a": 1, "b": 2}')
    assert pushed.returncode == 0, pushed.stderr
    job_id = pushed.stdout.strip()
    got = json.loads(cli("job", "get", job_id).stdout)
    assert got["kwargs"] == {"a": 1, "b": 2} and got["state"] == "pending"
    assert job_id in cli("job", "list", "--state", "pending").stdout
    assert "failed" in cli("job", "cancel", job_id).stdout
    undeclared = cli("job", "push", "jobs.add", "--queue", "nope")  # accepted: waits for it
    assert undeclared.returncode == 0, undeclared.stderr
    assert "nope" in cli("queue", "list").stdout.splitlines()[-1]
    assert "NOT DECLARED: 1 unfinished job" in cli("queue", "list").stdout
    listed = json.loads(cli("queue", "list", "--json").stdout)
    assert listed[-1] == {"name": "nope", "declared": False, "waiting_jobs": 1}
    assert cli("queue", "delete", "mail").returncode == 0
    assert "mail" not in cli("queue", "list").stdout
    assert cli("misc", "migrate", "--to-version", "0").returncode == 0


def test_help_explains_each_command() -> None:
    for args in (["--help"], ["queue", "--help"], ["job", "--help"], ["misc", "migrate", "--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "chancy.cli", *args], capture_output=True, text=True
        )
        assert result.returncode == 0 and "usage: chancy" in result.stdout


def test_queue_declare_refuses_a_bad_executor(cli) -> None:
    assert cli("misc", "migrate").returncode == 0
    bad = cli("queue", "declare", "mail", "--executor", "chancy.executors.nothing.Nope")
    assert bad.returncode == 1 and "cannot load executor" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    opts = cli("queue", "declare", "mail", "--executor-options", '{"bogus": 1}')
    assert opts.returncode == 1 and "bogus" in opts.stderr
    assert "mail" not in cli("queue", "list").stdout


def test_worker_list_marks_dead_workers(cli, dsn: str, prefix: str) -> None:
    import psycopg

    assert cli("misc", "migrate").returncode == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        for worker_id, expires, status in [
            ("alive-1", "now() + interval '1 minute'", '{"mail": {"status": "running"}}'),
            (
                "gone-2",
                "now() - interval '1 minute'",
                '{"mail": {"status": "failed", "error": "x"}}',
            ),
        ]:
            conn.execute(
                f"INSERT INTO {prefix}workers (worker_id, incarnation, hostname, pid, tags,"
                f" queues, queue_status, started_at, last_seen, expires_at) VALUES (%s, 'i', 'h',"
                f" 7, ARRAY['*'], ARRAY['mail'], %s::jsonb, now(), now(), {expires})",
                (worker_id, status),
            )
    out = cli("worker", "list").stdout.splitlines()
    assert out[0].split()[:4] == ["WORKER", "HOST:PID", "SEEN", "STATUS"]
    rows = {line.split()[0]: line for line in out[1:]}
    assert " alive " in rows["alive-1"] and "h:7" in rows["alive-1"]
    assert " DEAD " in rows["gone-2"] and "!mail(failed)" in rows["gone-2"]
    as_json = json.loads(cli("worker", "list", "--json").stdout)
    assert {w["worker_id"] for w in as_json} == {"alive-1", "gone-2"}
