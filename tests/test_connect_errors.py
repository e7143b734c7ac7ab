"""Connection errors: permanent ones fail at once, transient ones are retried and logged."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chancy import Chancy
from chancy._db import ConnectionRejected, is_permanent_connect_error
from chancy.errors import DatabaseUnavailable

TESTS = Path(__file__).parent
#: Long enough that a permanent error which is retried cannot pass for an immediate one.
LONG = 60


def _with(dsn: str, **params: str) -> str:
    info = conninfo_to_dict(dsn)
    info.update(params)
    return make_conninfo(**info)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _refused_dsn() -> str:
    return f"postgresql://postgres@127.0.0.1:{_free_port()}/x"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"dbname": "chancy_no_such_database"},
            'database "chancy_no_such_database" does not exist',
        ),
        ({"user": "chancy_no_such_role"}, 'role "chancy_no_such_role" does not exist'),
        ({"options": "-c chancy_bogus_setting=1"}, "unrecognized configuration parameter"),
    ],
)
async def test_permanent_error_fails_at_once(dsn: str, params: dict, expected: str) -> None:
    app = Chancy(_with(dsn, **params), plugins=[], poll_reconnect_timeout=LONG)
    started = time.monotonic()
    with anyio.fail_after(LONG / 2), pytest.raises(ConnectionRejected) as caught:
        async with app:
            pass
    elapsed = time.monotonic() - started
    assert elapsed < LONG / 2, elapsed
    assert elapsed < 5, elapsed
    message = str(caught.value)
    assert expected in message
    assert "not retried" in message
    assert "\n" not in message
    assert isinstance(caught.value, DatabaseUnavailable)  # callers catching it still work


def test_permanent_error_fails_at_once_sync(dsn: str) -> None:
    app = Chancy(
        _with(dsn, dbname="chancy_no_such_database"), plugins=[], poll_reconnect_timeout=LONG
    )
    started = time.monotonic()
    with pytest.raises(ConnectionRejected, match="does not exist"), app:
        pass
    assert time.monotonic() - started < 5


@pytest.mark.anyio
async def test_refused_is_retried_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    app = Chancy(_refused_dsn(), plugins=[], poll_reconnect_timeout=2)
    started = time.monotonic()
    with (
        caplog.at_level(logging.WARNING, logger="chancy"),
        anyio.fail_after(20),
        pytest.raises(DatabaseUnavailable) as caught,
    ):
        async with app:
            pass
    elapsed = time.monotonic() - started
    assert not isinstance(caught.value, ConnectionRejected)
    assert 1.5 <= elapsed < 10, elapsed
    assert "Connection refused" in str(caught.value)
    assert "within 2 s" in str(caught.value)
    retries = [r for r in caplog.records if r.levelno == logging.WARNING and "refused" in r.message]
    assert len(retries) >= 1
    assert all("retrying" in r.message for r in retries)


def test_classification() -> None:
    def op(message: str) -> psycopg.OperationalError:
        return psycopg.OperationalError(message)

    failed = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
    permanent = [
        failed + 'FATAL:  database "x" does not exist',
        failed + 'FATAL:  role "x" does not exist',
        failed + 'FATAL:  password authentication failed for user "x"',
        failed + 'FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "x", database "y"',
        'connection failed: FATAL:  invalid connection option "bogus"',
    ]
    transient = [
        failed + "Connection refused\n\tIs the server running on that host?",
        failed + "timeout expired",
        failed + "FATAL:  the database system is starting up",
        failed + "FATAL:  the database system is shutting down",
        failed + "FATAL:  the database system is in recovery mode",
        failed + "FATAL:  sorry, too many clients already",
        "failed to resolve host 'db': [Errno -2] Name or service not known",
        "something nobody has seen before",
    ]
    assert all(is_permanent_connect_error(op(m)) for m in permanent)
    assert not any(is_permanent_connect_error(op(m)) for m in transient)
    assert is_permanent_connect_error(psycopg.ProgrammingError("invalid URI query parameter"))
    # Several hosts: one that answers "does not exist" settles it.
    both = failed + "Connection refused\n- host: 'b': " + failed + 'FATAL:  role "x" does not exist'
    assert is_permanent_connect_error(op(both))


def _cli(dsn: str, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {
        **os.environ,
        "CHANCY_CLI_DSN": dsn,
        "CHANCY_CLI_PREFIX": "t_connect_",
        "PYTHONPATH": str(TESTS),
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "chancy.cli", "--app", "cliapp:make", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, time.monotonic() - started


def _error_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("chancy: ")]


def test_cli_gives_up_on_a_refused_port() -> None:
    result, elapsed = _cli(_refused_dsn(), "--connect-timeout", "1", "misc", "check-schema")
    assert result.returncode == 1, result
    assert elapsed < 15, elapsed  # interpreter start-up included
    errors = _error_lines(result)
    assert len(errors) == 1
    assert result.stderr.rstrip().endswith(errors[0])
    assert "Connection refused" in errors[0]
    assert "within 1 s" in errors[0]


def test_cli_default_timeout_is_short() -> None:
    # Without --connect-timeout the app's poll_reconnect_timeout (300 s) would apply.
    result, elapsed = _cli(_refused_dsn(), "queue", "list")
    assert result.returncode == 1, result
    assert elapsed < 30, elapsed
    assert "within 10 s" in _error_lines(result)[0]


def test_cli_missing_database_fails_at_once(dsn: str) -> None:
    missing = _with(dsn, dbname="chancy_no_such_database")
    result, elapsed = _cli(missing, "--connect-timeout", "30", "queue", "list")
    assert result.returncode == 1, result
    assert elapsed < 15, elapsed
    errors = _error_lines(result)
    assert len(errors) == 1
    assert "does not exist" in errors[0]
    assert "not reachable yet" not in result.stderr  # no retry
