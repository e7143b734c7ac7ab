"""Real processes for the fuzzing and browser tests: `chancy ... dashboard` and
`chancy-supervisor`, on the app of dashapp.py (a prefix of their own)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

HERE = Path(__file__).parent
TESTS = HERE.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(dsn: str, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "CHANCY_DASH_DSN": dsn,
        "CHANCY_DASH_PREFIX": prefix,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(TESTS)]),
    }


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def dashboard(dsn: str, prefix: str, token_file: Path, *options: str, log: Path) -> Iterator[str]:
    """A dashboard process serving on a free loopback port; yields its URL."""
    port = free_port()
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chancy.cli",
                "--app",
                "dashapp:make",
                "dashboard",
                "--port",
                str(port),
                "--token-file",
                str(token_file),
                "--log-level",
                "warning",
                *options,
            ],
            env=environment(dsn, prefix),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the dashboard exited: {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/api/v1/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the dashboard did not come up: {log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield url
    finally:
        _stop(process)


@contextlib.contextmanager
def supervisor(dsn: str, prefix: str, *, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chancy.supervisor.cli",
                "--app",
                "dashapp:make",
                "--heartbeat-poll-interval",
                "1",
                "--shutdown-timeout",
                "3",
            ],
            env=environment(dsn, prefix),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        _stop(process)


def drop_prefix(dsn: str, prefix: str) -> None:
    """Drop every table of `prefix` (the processes' tables outlive their tests otherwise)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            " AND starts_with(tablename, %s)",
            (prefix,),
        ).fetchall()
        for (name,) in rows:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(name)))
