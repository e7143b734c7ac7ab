"""`chancy --app module:attribute ...`, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
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
        ("cliapp:send_report", "'send_report' is a callable that needs arguments"),
        ("cliapp:makes_nothing", "'makes_nothing'() returned NoneType, not a Chancy app"),
        ("cliapp.not_an_app", "is not a Chancy app"),  # module.attribute works too
    ]:
        result = cli("misc", "migrate", app=app)
        assert result.returncode == 2, result
        assert result.stderr.count("\n") == 1
        assert message in result.stderr


def test_migrate_queues_and_jobs(cli) -> None:
    assert cli("misc", "check-schema").returncode == 1
    result = cli("misc", "migrate")
    assert result.returncode == 0, result.stderr
    assert "core: version 6 of 6" in result.stdout
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
    assert got["kwargs"] == {"a": 1, "b": 2}
    assert got["state"] == "pending"
    assert job_id in cli("job", "list", "--state", "pending").stdout
    assert "failed" in cli("job", "cancel", job_id).stdout
    undeclared = cli("job", "push", "jobs.add", "--queue", "nope")  # accepted: waits for it
    assert undeclared.returncode == 0, undeclared.stderr
    assert "nope" in cli("queue", "list").stdout.splitlines()[-1]
    assert "NOT DECLARED: 1 unfinished job" in cli("queue", "list").stdout
    listed = json.loads(cli("queue", "list", "--json").stdout)
    assert listed[-1] == {"name": "nope", "declared": False, "waiting_jobs": 1}
    # The operator's commands.
    paused = cli("queue", "pause", "mail", "--for", "600")
    assert paused.returncode == 0
    assert "paused mail until" in paused.stdout
    stats = json.loads(cli("queue", "stats", "--json").stdout)
    assert [(s["name"], s["state"], s["pending"]) for s in stats] == [
        ("mail", "paused", 0),
        ("nope", None, 1),
    ]
    assert "UNDECLARED" in cli("queue", "stats").stdout
    assert cli("queue", "resume", "mail").returncode == 0
    assert job_id in cli("job", "list", "--queue", "mail", "--state", "failed").stdout
    assert cli("job", "list", "--queue", "mail", "--after", job_id).stdout == ""
    unasked = cli("job", "retry", "--queue", "mail", "--state", "failed")  # no tty to ask on
    assert unasked.returncode == 1
    assert "1 job(s) match: pass --yes" in unasked.stderr
    retried = cli("job", "retry", "--queue", "mail", "--state", "failed", "--yes")
    assert retried.returncode == 0
    assert f"{job_id}: retried" in retried.stdout
    again = cli("job", "retry", job_id)
    assert "skipped: job is pending, not finished" in again.stdout
    refused = cli("job", "purge")
    assert refused.returncode == 1
    assert "or --all for every job" in refused.stderr
    purged = cli("job", "purge", "--all", "--yes")
    assert "2 purged, 0 skipped" in purged.stdout, purged
    assert cli("queue", "delete", "mail").returncode == 0
    assert "mail" not in cli("queue", "list").stdout
    assert cli("misc", "migrate", "--to-version", "0").returncode == 0


def test_help_explains_each_command() -> None:
    for args in (["--help"], ["queue", "--help"], ["job", "--help"], ["misc", "migrate", "--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "chancy.cli", *args], capture_output=True, text=True
        )
        assert result.returncode == 0
        assert "usage: chancy" in result.stdout


def test_queue_declare_refuses_a_bad_executor(cli) -> None:
    assert cli("misc", "migrate").returncode == 0
    bad = cli("queue", "declare", "mail", "--executor", "chancy.executors.nothing.Nope")
    assert bad.returncode == 1
    assert "cannot load executor" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    opts = cli("queue", "declare", "mail", "--executor-options", '{"bogus": 1}')
    assert opts.returncode == 1
    assert "bogus" in opts.stderr
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
    assert " alive " in rows["alive-1"]
    assert "h:7" in rows["alive-1"]
    assert " DEAD " in rows["gone-2"]
    assert "!mail(failed)" in rows["gone-2"]
    as_json = json.loads(cli("worker", "list", "--json").stdout)
    assert {w["worker_id"] for w in as_json} == {"alive-1", "gone-2"}


def test_operator_commands_push_dry_run_move_reprioritize_json(cli) -> None:
    assert cli("misc", "migrate").returncode == 0
    pushed = cli(
        "job", "push", "jobs.add", "--queue", "mail", "--kwargs", '{"a": 1, "b": 2}',
        "--scheduled-at", "1h", "--unique-key", "k1", "--max-attempts", "3",
        "--limit", "memory=512M,time=30s", "--priority", "2", "--json",
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    job_id = json.loads(pushed.stdout)["id"]
    got = json.loads(cli("job", "get", job_id).stdout)
    assert got["unique_key"] == "k1"
    assert got["max_attempts"] == 3
    assert got["priority"] == 2
    assert sorted((lim["type"], lim["value"]) for lim in got["limits"]) == [
        ("memory", 512 * 2**20),
        ("time", 30),
    ]
    assert datetime.fromisoformat(got["scheduled_at"]) > datetime.now(UTC) + timedelta(minutes=59)
    bad = cli("job", "push", "jobs.add", "--limit", "memory=lots")
    assert bad.returncode == 2
    assert "expected e.g. memory=512M,time=30s" in bad.stderr

    listed = json.loads(cli("job", "list", "--since", "1h", "--json").stdout)
    assert [j["id"] for j in listed] == [job_id]
    assert json.loads(cli("job", "list", "--until", "1h", "--json").stdout) == []

    # A dry run says exactly what would happen and changes nothing.
    dry = cli("job", "move", "--queue", "mail", "--to", "other", "--dry-run", "--json")
    assert json.loads(dry.stdout) == {"dry_run": True, "done": [job_id], "skipped": {}}
    assert json.loads(cli("job", "get", job_id).stdout)["queue"] == "mail"
    text = cli("job", "move", "--queue", "mail", "--to", "other", "--dry-run")
    assert f"{job_id}: would be moved to other" in text.stdout
    moved = cli("job", "move", job_id, "--to", "other")  # by id: no question asked
    assert moved.returncode == 0
    assert f"{job_id}: moved to other" in moved.stdout
    assert json.loads(cli("job", "get", job_id).stdout)["queue"] == "other"
    both = cli("job", "move", job_id, "--queue", "other", "--to", "mail")
    assert both.returncode == 1
    assert "not both" in both.stderr

    re = cli("job", "reprioritize", "--queue", "other", "--priority", "9", "--yes", "--json")
    assert json.loads(re.stdout)["done"] == [job_id]
    assert json.loads(cli("job", "get", job_id).stdout)["priority"] == 9

    assert cli("queue", "declare", "other").returncode == 0
    paused = cli("queue", "pause", "other", "--resume-at", "2099-01-01T00:00:00", "--json")
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout)["resume_at"].startswith("2099-01-01T00:00:00")
    assert cli("queue", "pause", "other", "--for", "5", "--resume-at", "1h").returncode == 1
    resumed = json.loads(cli("queue", "resume", "other", "--json").stdout)
    assert resumed["state"] == "active"
    assert resumed.get("resume_at") is None
    assert cli("misc", "migrate", "--to-version", "0").returncode == 0


def test_every_operator_command_has_help_and_json() -> None:
    for command in (
        ["job", "list"], ["job", "retry"], ["job", "purge"], ["job", "move"],
        ["job", "reprioritize"], ["job", "push"], ["queue", "stats"], ["queue", "pause"],
        ["queue", "resume"], ["queue", "list"], ["worker", "list"],
    ):  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "chancy.cli", *command, "--help"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, command
        assert "--json" in result.stdout, command
