"""Bad input gets a clear error: DSNs, unreachable servers, names, concurrent migrations."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import anyio
import pytest

from chancy import Chancy
from chancy.errors import DatabaseUnavailable
from chancy.migrations import CORE_MIGRATIONS


def test_malformed_dsn_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="dsn: not a valid PostgreSQL connection string"):
        Chancy("host=localhost port", plugins=[])
    with pytest.raises(ValueError, match="dsn"):
        Chancy("   ", plugins=[])


@pytest.mark.parametrize("prefix", ["", "Upper_", "1abc", "with-dash", "x" * 41, "a b"])
def test_bad_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Chancy("postgresql://localhost/x", prefix=prefix, plugins=[])


def test_bad_pool_sizes() -> None:
    with pytest.raises(ValueError, match="max_connection_pool_size"):
        Chancy(
            "postgresql://localhost/x",
            plugins=[],
            min_connection_pool_size=5,
            max_connection_pool_size=2,
        )


@pytest.mark.anyio
async def test_unreachable_server_fails_within_the_timeout() -> None:
    # Nothing listens on port 1: the error comes after poll_reconnect_timeout, not a hang.
    app = Chancy("postgresql://postgres@127.0.0.1:1/x", plugins=[], poll_reconnect_timeout=1)
    started = anyio.current_time()
    with anyio.fail_after(20), pytest.raises(DatabaseUnavailable, match="127.0.0.1:1"):
        async with app:
            pass
    assert anyio.current_time() - started < 15


def test_unreachable_server_sync() -> None:
    app = Chancy("postgresql://postgres@127.0.0.1:1/x", plugins=[], poll_reconnect_timeout=1)
    with pytest.raises(DatabaseUnavailable, match="cannot connect"), app:
        pass


def test_two_processes_migrating_at_once(dsn: str, prefix: str) -> None:
    script = textwrap.dedent(
        f"""
        import anyio
        from chancy import Chancy

        async def main():
            async with Chancy({dsn!r}, prefix={prefix!r}, plugins=[]) as app:
                await app.migrate()
                assert await app.is_up_to_date()

        anyio.run(main)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in results), results
    latest = CORE_MIGRATIONS[-1].version
    migrated = sum(f"migrated core from version 0 to {latest}" in err for _, err in results)
    assert migrated == 1, results


def test_embedded_server_when_no_dsn(monkeypatch, caplog) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    from chancy.embedded import default_dsn, embedded_dsn

    # Directly under the temp dir: the server may run as another user, who must reach it.
    tmp_path = Path(tempfile.mkdtemp(prefix="chancy-embedded-"))

    monkeypatch.setenv("CHANCY_DSN", "postgresql://example.invalid/db")
    assert default_dsn() == "postgresql://example.invalid/db"
    caplog.set_level("INFO", logger="chancy")
    dsn = embedded_dsn(tmp_path / "pg", keep_running=False)
    assert str(tmp_path / "pg") in caplog.text
    import psycopg

    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    from chancy.embedded import stop_embedded

    assert stop_embedded(tmp_path / "pg")
    shutil.rmtree(tmp_path, ignore_errors=True)


# -- the one exception tree -------------------------------------------------------------


def test_the_exception_tree_is_one_leaf_module() -> None:
    """Every Chancy exception lives in chancy.errors, under one of two roots, and the old
    import paths give the very same classes (an ``except`` written against either catches)."""
    import chancy._db
    import chancy.allowlist
    import chancy.errors as errors
    import chancy.executors
    import chancy.supervisor
    import chancy.supervisor.errors
    import chancy.wire

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.ChancyError | errors.JobStopped), name
        assert cls.__module__ == "chancy.errors", name
    assert not issubclass(errors.JobStopped, Exception)  # a job's `except Exception` misses it
    assert issubclass(errors.TimeLimitExceeded, errors.JobStopped)
    assert issubclass(errors.JobCancelled, errors.JobStopped)
    assert issubclass(errors.ConnectionRejected, errors.DatabaseUnavailable)
    assert issubclass(errors.DatabaseUnavailable, ConnectionError)
    assert chancy.supervisor.TimeLimitExceeded is errors.TimeLimitExceeded
    assert chancy.supervisor.errors.JobCancelled is errors.JobCancelled
    assert chancy.executors.JobCancelled is errors.JobCancelled
    assert chancy.executors.TimeLimitExceeded is errors.TimeLimitExceeded
    assert chancy._db.DatabaseUnavailable is errors.DatabaseUnavailable
    assert sys.modules["chancy.job"].JobImportError is errors.JobImportError
    assert chancy.allowlist.JobNotAllowed is errors.JobNotAllowed
    assert chancy.wire.ProtocolError is errors.ProtocolError


def test_chancy_errors_imports_no_driver_or_event_loop() -> None:
    """``import chancy.errors`` is cheap: no psycopg, anyio, msgspec or psutil."""
    code = textwrap.dedent(
        """
        import sys
        import chancy.errors
        heavy = {"psycopg", "psycopg_pool", "anyio", "msgspec", "psutil", "trio"}
        loaded = sorted(heavy & {name.split(".")[0] for name in sys.modules})
        print(",".join(loaded))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


def test_a_missing_submodule_is_named_in_the_import_error() -> None:
    from chancy.errors import JobImportError
    from chancy.job import import_function

    with pytest.raises(JobImportError, match="no module named 'chancy.executors.nothing'"):
        import_function("chancy.executors.nothing.Nope")
    with pytest.raises(JobImportError, match="module 'chancy.executors' has no attribute 'Nope'"):
        import_function("chancy.executors.Nope")
