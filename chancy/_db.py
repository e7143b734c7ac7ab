"""The one backend-neutral way to reach PostgreSQL.

psycopg's async API runs on asyncio only, so under trio (or any non-asyncio anyio backend) the
same operations run on psycopg's sync pool in worker threads. Everything else in Chancy talks to
the database through `Database.connection()` and the small `Conn` interface below, so this choice
lives here alone.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import psycopg
import sniffio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from chancy.errors import ConnectionRejected, DatabaseUnavailable

if TYPE_CHECKING:
    import logging

T = TypeVar("T")
Query = str | sql.Composable
Params = Sequence[Any] | dict[str, Any] | None


# SQLSTATEs of connection failures. psycopg (3.3) attaches none to a failed connect, so the
# message text below is what decides in practice; these are used when a sqlstate is present.
_PERMANENT_SQLSTATE_PREFIXES = ("28", "3D", "42501", "42704", "22023", "55000")
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "57P", "53")

# Fragments of libpq/server messages, lowercased. Transient ones are checked first so that, e.g.,
# "the database system is starting up" is never mistaken for a configuration error.
_TRANSIENT_FRAGMENTS = (
    "connection refused",
    "timeout expired",
    "timed out",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
    "too many clients",
    "too many connections",
    "remaining connection slots are reserved",
    "server closed the connection unexpectedly",
    "no such file or directory",  # the Unix socket of a server not started yet
    "could not translate host name",  # DNS: a service name not published yet
    "failed to resolve host",
    "name or service not known",
    "temporary failure in name resolution",
    "network is unreachable",
    "no route to host",
)
_PERMANENT_FRAGMENTS = (
    "does not exist",  # database or role
    "password authentication failed",
    "authentication failed",  # peer, ident, scram, gss, ...
    "no pg_hba.conf entry",
    "pg_hba.conf rejects connection",
    "no password supplied",
    "password is required",
    "is not permitted to log in",
    "permission denied for database",
    "is not currently accepting connections",  # datallowconn = false
    "invalid connection option",
    "invalid uri query parameter",
    "invalid integer value",
    "invalid sslmode value",
    "unrecognized configuration parameter",
    "invalid value for parameter",
    "ssl was required",
    "server does not support ssl",
)


def connect_error_reason(exc: BaseException) -> str:
    """The whole message of a connection error on one line (libpq's lines joined by " / ")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " / ".join(lines) if lines else repr(exc)


def _is_permanent_fragment(text: str) -> bool:
    text = text.lower()
    if any(f in text for f in _TRANSIENT_FRAGMENTS):
        return False
    return any(f in text for f in _PERMANENT_FRAGMENTS)


def is_permanent_connect_error(exc: BaseException) -> bool:
    """Whether a failed connection attempt cannot succeed by retrying.

    Permanent: the server answered and refused (authentication failed, no pg_hba.conf entry,
    database or role does not exist, CONNECT not allowed, unknown startup parameter), or libpq
    rejected the connection options. Transient: refused, timeout, DNS failure, server starting
    up / shutting down / in recovery, too many connections. Unknown failures count as transient,
    so they are retried as before. With several hosts, one host refusing permanently is enough.
    """
    if isinstance(exc, psycopg.ProgrammingError):  # the conninfo itself is invalid
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        if sqlstate.startswith(_TRANSIENT_SQLSTATE_PREFIXES):
            return False
        if sqlstate.startswith(_PERMANENT_SQLSTATE_PREFIXES):
            return True
    # psycopg reports every host's attempt on lines of its own ("- host: ...: connection failed:
    # ..."), libpq adds hint lines starting with a tab. Classify each line alone.
    return any(_is_permanent_fragment(line) for line in str(exc).splitlines())


def describe_dsn(dsn: str) -> str:
    """`host:port/dbname` of a DSN, without credentials, for messages and logs."""
    info = conninfo_to_dict(dsn)
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"{host}:{port}/{info.get('dbname') or info.get('user') or ''}"


def check_dsn(dsn: str) -> None:
    """Raise `ValueError` for a DSN libpq cannot parse (credentials are not echoed)."""
    if not isinstance(dsn, str) or not dsn.strip():
        raise ValueError(
            "dsn: expected a PostgreSQL connection string such as postgresql://host/db"
        )
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        reason = str(exc).split("\n")[0]
        raise ValueError(f"dsn: not a valid PostgreSQL connection string ({reason})") from None


def _on_asyncio() -> bool:
    try:
        return sniffio.current_async_library() == "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


class Conn:
    """A connection in autocommit mode; `transaction()` groups statements."""

    raw: Any

    async def execute(self, query: Query, params: Params = None) -> None:
        raise NotImplementedError

    async def fetchall(self, query: Query, params: Params = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def fetchone(self, query: Query, params: Params = None) -> tuple[Any, ...] | None:
        rows = await self.fetchall(query, params)
        return rows[0] if rows else None

    async def run_sync(self, func: Callable[[psycopg.Connection], T]) -> T:
        """Run `func(sync_connection)`; only on the thread-backed connection."""
        raise NotImplementedError

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]:
        raise NotImplementedError

    async def notifies(self, timeout: float) -> list[tuple[str, str]]:
        """Notifications received so far, waiting up to `timeout` seconds for the first."""
        raise NotImplementedError


class _AsyncConn(Conn):
    def __init__(self, raw: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
        self.raw = raw

    async def execute(self, query: Query, params: Params = None) -> None:
        await self.raw.execute(query, params)

    async def fetchall(self, query: Query, params: Params = None) -> list[tuple[Any, ...]]:
        cur = await self.raw.execute(query, params)
        rows: list[tuple[Any, ...]] = await cur.fetchall()
        return rows

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self.raw.transaction():
            yield

    async def notifies(self, timeout: float) -> list[tuple[str, str]]:
        got = [
            (n.channel, n.payload) async for n in self.raw.notifies(timeout=timeout, stop_after=1)
        ]
        if got:  # then whatever else is already in, without waiting
            got += [(n.channel, n.payload) async for n in self.raw.notifies(timeout=0.0)]
        return got


class CursorConn(Conn):
    """`Conn` over the caller's async cursor, for the `*_ex` operations (single statements,
    inside whatever transaction the caller has open)."""

    def __init__(self, cursor: psycopg.AsyncCursor[tuple[Any, ...]]) -> None:
        self.raw = cursor

    async def execute(self, query: Query, params: Params = None) -> None:
        await self.raw.execute(query, params)

    async def fetchall(self, query: Query, params: Params = None) -> list[tuple[Any, ...]]:
        await self.raw.execute(query, params)
        rows: list[tuple[Any, ...]] = await self.raw.fetchall()
        return rows


class _ThreadConn(Conn):
    def __init__(self, raw: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.raw = raw

    async def run_sync(self, func: Callable[[psycopg.Connection], T]) -> T:
        return await anyio.to_thread.run_sync(func, self.raw, abandon_on_cancel=False)

    async def execute(self, query: Query, params: Params = None) -> None:
        await anyio.to_thread.run_sync(self.raw.execute, query, params)

    async def fetchall(self, query: Query, params: Params = None) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            rows: list[tuple[Any, ...]] = self.raw.execute(query, params).fetchall()
            return rows

        return await anyio.to_thread.run_sync(run)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        tx = self.raw.transaction()
        await anyio.to_thread.run_sync(tx.__enter__)
        try:
            yield
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(tx.__exit__, type(exc), exc, exc.__traceback__)
            raise
        else:
            await anyio.to_thread.run_sync(tx.__exit__, None, None, None)

    async def notifies(self, timeout: float) -> list[tuple[str, str]]:
        def run() -> list[tuple[str, str]]:
            got = [(n.channel, n.payload) for n in self.raw.notifies(timeout=timeout, stop_after=1)]
            if got:
                got += [(n.channel, n.payload) for n in self.raw.notifies(timeout=0.0)]
            return got

        # Short waits keep cancellation prompt: the thread cannot be interrupted.
        return await anyio.to_thread.run_sync(run)


class Database:
    """Pools for one DSN: an asyncio pool on asyncio, a sync pool (in threads) elsewhere."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int,
        max_size: int,
        connect_timeout: float,
        log: logging.Logger,
        listen_dsn: str | None = None,
        connection_kwargs: dict[str, Any] | None = None,
    ) -> None:
        check_dsn(dsn)
        if listen_dsn is not None:
            check_dsn(listen_dsn)
        self.dsn = dsn
        #: Where the LISTEN connection goes (a transaction-mode pooler cannot carry it).
        self.listen_dsn = listen_dsn or dsn
        # One dict, shared with the pools (psycopg_pool reads it for every new connection), so
        # that `name_connections` reaches connections opened later by a pool already open.
        self._named = "application_name" in (connection_kwargs or {})  # the user's choice wins
        self._connect_kwargs: dict[str, Any] = {
            "application_name": "chancy",
            **(connection_kwargs or {}),
            "autocommit": True,
        }
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.log = log
        self.async_pool: AsyncConnectionPool | None = None
        self.sync_pool: ConnectionPool | None = None

    @property
    def application_name(self) -> str:
        return str(self._connect_kwargs["application_name"])

    def name_connections(self, name: str) -> None:
        """Set `application_name` (seen in `pg_stat_activity`) of connections opened from now
        on; a connection the pool already holds keeps its name until it is recycled."""
        if not self._named:
            self._connect_kwargs["application_name"] = name[:63]  # NAMEDATALEN - 1

    # -- lifecycle -------------------------------------------------------------------------

    def _wait_until_reachable(self) -> None:
        """Connect once, retrying transient failures until `connect_timeout` runs out.

        A permanent failure (see `is_permanent_connect_error`) raises `ConnectionRejected` at
        once; a transient one is logged at WARNING with its reason and retried with backoff,
        and `DatabaseUnavailable` (with the last reason in full) is raised when time runs out.
        """
        where = describe_dsn(self.dsn)
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.1
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            try:
                timeout = max(1, min(10, int(remaining) + 1))
                psycopg.connect(
                    self.dsn, **{**self._connect_kwargs, "connect_timeout": timeout}
                ).close()
                return
            except psycopg.Error as exc:
                reason = connect_error_reason(exc)
                if is_permanent_connect_error(exc):
                    raise ConnectionRejected(
                        f"cannot connect to PostgreSQL at {where}: {reason} "
                        "(a permanent error: not retried)"
                    ) from None
                if not isinstance(exc, psycopg.OperationalError):
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DatabaseUnavailable(
                        f"cannot connect to PostgreSQL at {where} within "
                        f"{self.connect_timeout:g} s ({attempt} attempts): {reason}"
                    ) from None
                self.log.warning(
                    "PostgreSQL at %s not reachable yet (attempt %d: %s); retrying in %.1f s",
                    where,
                    attempt,
                    reason,
                    min(delay, remaining),
                )
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 2.0)

    def _pool_kwargs(self) -> dict[str, Any]:
        return {
            "conninfo": self.dsn,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "kwargs": self._connect_kwargs,
            "open": False,
            "reconnect_timeout": max(self.connect_timeout, 1),
        }

    def open_sync(self) -> ConnectionPool:
        if self.sync_pool is None:
            self._wait_until_reachable()
            pool = ConnectionPool(**self._pool_kwargs())
            pool.open(wait=True, timeout=max(self.connect_timeout, 1))
            self.sync_pool = pool
        return self.sync_pool

    async def open(self) -> None:
        """Open the pool that suits the running event loop."""
        if _on_asyncio():
            if self.async_pool is None:
                await anyio.to_thread.run_sync(self._wait_until_reachable)
                pool = AsyncConnectionPool(**self._pool_kwargs())
                await pool.open(wait=True, timeout=max(self.connect_timeout, 1))
                self.async_pool = pool
        else:
            await anyio.to_thread.run_sync(self.open_sync)

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            if self.async_pool is not None:
                pool, self.async_pool = self.async_pool, None
                await pool.close()
            if self.sync_pool is not None:
                pool_s, self.sync_pool = self.sync_pool, None
                await anyio.to_thread.run_sync(pool_s.close)

    def close_sync(self) -> None:
        if self.sync_pool is not None:
            pool, self.sync_pool = self.sync_pool, None
            pool.close()

    # -- use -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection (autocommit) for the running backend."""
        if _on_asyncio():
            if self.async_pool is None:
                await self.open()
            assert self.async_pool is not None
            async with self.async_pool.connection() as raw:
                yield _AsyncConn(raw)
        else:
            pool = self.sync_pool
            if pool is None:
                pool = await anyio.to_thread.run_sync(self.open_sync)
            raw_s = await anyio.to_thread.run_sync(pool.getconn)
            try:
                yield _ThreadConn(raw_s)
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(pool.putconn, raw_s)

    @contextlib.asynccontextmanager
    async def dedicated(self) -> AsyncIterator[Conn]:
        """A connection outside the pool (for LISTEN), closed on exit."""
        if _on_asyncio():
            raw = await psycopg.AsyncConnection.connect(self.listen_dsn, **self._connect_kwargs)
            try:
                yield _AsyncConn(raw)
            finally:
                with anyio.CancelScope(shield=True):
                    await raw.close()
        else:
            raw_s = await anyio.to_thread.run_sync(
                lambda: psycopg.connect(self.listen_dsn, **self._connect_kwargs)
            )
            try:
                yield _ThreadConn(raw_s)
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(raw_s.close)


def dumps(value: Any) -> str:
    """Strict JSON (no NaN, only JSON types) for values stored in jsonb columns."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"))
