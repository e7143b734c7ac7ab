"""`chancy workflow list|get|retry|cancel`, run as a real process against a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from chancy import Chancy, Job, Queue
from chancy.plugins.workflow import Workflow, WorkflowPlugin, get_workflow, push_workflow

HERE = Path(__file__).parent


def run(dsn: str, prefix: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CHANCY_CLI_DSN": dsn,
        "CHANCY_CLI_PREFIX": prefix,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)]),
    }
    return subprocess.run(
        [sys.executable, "-m", "chancy.cli", "--app", "wfcliapp:make", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_workflow_commands(dsn: str, prefix: str) -> None:
    assert run(dsn, prefix, "misc", "migrate").returncode == 0
    app = Chancy(dsn, prefix=prefix, plugins=[WorkflowPlugin()])
    job = Job(func="wfjobs.value", queue="wf", kwargs={"x": 1})

    async def push() -> tuple[str, str]:
        async with app:
            await app.declare(Queue("wf", state=Queue.State.PAUSED))
            flow = Workflow("cli").add("a", job).add("b", job, ["a"])
            ref = await push_workflow(app, flow)
            assert flow["a"].job_id is not None
            return str(ref), flow["a"].job_id

    ref, first = anyio.run(push)
    listed = run(dsn, prefix, "workflow", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"{ref} pending   0/2 steps failed=0 cli" in listed.stdout
    assert json.loads(run(dsn, prefix, "workflow", "list", "--json").stdout)[0]["id"] == ref
    assert run(dsn, prefix, "workflow", "list", "--state", "failed").stdout == ""
    got = run(dsn, prefix, "workflow", "get", ref)
    assert got.returncode == 0, got.stderr
    assert "a                    ready" in got.stdout
    assert "b                    waiting" in got.stdout
    assert "after a" in got.stdout
    steps = json.loads(run(dsn, prefix, "workflow", "get", ref, "--json").stdout)["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [("a", "ready"), ("b", "waiting")]
    assert '"a" -> "b"' in run(dsn, prefix, "workflow", "get", ref, "--dot").stdout
    cancelled = run(dsn, prefix, "workflow", "cancel", ref)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "2 unfinished step(s) cancelled" in cancelled.stdout
    retried = run(dsn, prefix, "workflow", "retry", ref)
    assert retried.returncode == 0, retried.stderr
    assert "2 failed step(s) run again" in retried.stdout

    async def state() -> tuple[str, list[str | None]]:
        async with app:
            flow = await get_workflow(app, ref)
            assert flow is not None
            return flow.state.value, [s.status for _, s in flow]

    assert anyio.run(state) == ("running", ["ready", "waiting"])
    missing = run(dsn, prefix, "workflow", "get", "00000000-0000-7000-8000-000000000000")
    assert missing.returncode == 1
    assert "no workflow" in missing.stderr
    unknown = run(dsn, prefix, "workflow", "retry", "00000000-0000-7000-8000-000000000000")
    assert unknown.returncode == 1
    assert "unknown workflow" in unknown.stderr
    assert first


@pytest.mark.parametrize("command", ["list", "get", "retry", "cancel"])
def test_workflow_commands_have_help(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chancy.cli", "workflow", command, "--help"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    assert "usage: chancy workflow" in result.stdout
