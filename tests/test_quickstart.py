"""The README's quickstart, run the way a new user runs it: `python examples/quickstart.py`."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture
def fresh_dsn(server_dsn: str) -> Iterator[str]:
    """A database of its own: the quickstart uses the default table prefix."""
    name = f"chancy_qs_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(server_dsn)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


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
