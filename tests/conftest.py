"""Test fixtures: a real PostgreSQL (CHANCY_TEST_DSN, else an embedded server), a fresh database
per test session, a fresh table prefix per test, and both anyio backends."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chancy import Chancy

TESTS = Path(__file__).parent
# Test job modules (tests/jobs*.py) must be importable by workers and child processes.
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """The server to test against: CHANCY_TEST_DSN, else an embedded PostgreSQL."""
    dsn = os.environ.get("CHANCY_TEST_DSN")
    if dsn:
        yield dsn
        return
    from chancy.embedded import embedded_dsn, stop_embedded

    with tempfile.TemporaryDirectory(prefix="chancy-pg-") as folder:
        uri = embedded_dsn(folder, keep_running=False)
        try:
            yield uri
        finally:
            stop_embedded(folder)


@pytest.fixture(scope="session")
def dsn(server_dsn: str) -> Iterator[str]:
    """A database created for this test session (and dropped after it)."""
    name = f"chancy_test_{os.getpid()}_{secrets.token_hex(3)}"
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


@pytest.fixture
def prefix() -> str:
    """A table prefix of one's own for each test."""
    return f"t{secrets.token_hex(4)}_"


@pytest.fixture
async def chancy(dsn: str, prefix: str) -> AsyncIterator[Chancy]:
    """A migrated app with its own tables and no plugins, open on the test's backend."""
    app = Chancy(dsn, prefix=prefix, plugins=[], poll_reconnect_timeout=10)
    async with app:
        await app.migrate()
        yield app


@pytest.fixture
def sync_chancy(dsn: str, prefix: str) -> Iterator[Chancy]:
    """A migrated app opened with `with` (sync methods only)."""
    import anyio

    app = Chancy(dsn, prefix=prefix, plugins=[], poll_reconnect_timeout=10)

    async def migrate() -> None:
        async with app:
            await app.migrate()

    anyio.run(migrate)
    with app:
        yield app
