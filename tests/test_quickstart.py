"""The README's quickstart, run the way a new user runs it: `python examples/quickstart.py`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import fresh_database

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture
def fresh_dsn(server_dsn: str) -> Iterator[str]:
    """A database of its own: the quickstart uses the default table prefix."""
    with fresh_database(server_dsn, "chancy_qs") as database:
        yield database


def test_quickstart_runs_end_to_end(fresh_dsn: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["CHANCY_DSN"] = fresh_dsn
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "tasks.greet -> succeeded after 1 attempt(s)" in lines, run.stdout
    assert lines.count("tasks.greet -> succeeded after 1 attempt(s)") == 2, run.stdout
    assert "tasks.fetch -> succeeded after 1 attempt(s)" in lines, run.stdout
