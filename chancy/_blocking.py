"""Run Chancy's async operations on a plain synchronous connection.

The `sync_*` methods of `Chancy` share one implementation with their async twins: each operation
is a coroutine written against `Conn`, and `BlockingConn` implements `Conn` with blocking psycopg
calls, so the coroutine never suspends and `run_blocking` drives it to the end in one step. No
event loop is involved, so these methods work in any thread, with or without a running loop.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, TypeVar

from chancy._db import Conn, Params, Query

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine

    import psycopg

T = TypeVar("T")


class BlockingConn(Conn):
    """`Conn` over a sync psycopg connection: every "await" completes before it returns."""

    def __init__(self, raw: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.raw = raw

    async def execute(self, query: Query, params: Params = None) -> None:
        self.raw.execute(query, params)

    async def fetchall(self, query: Query, params: Params = None) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.raw.execute(query, params).fetchall()
        return rows

    async def run_sync(self, func: Callable[[psycopg.Connection], T]) -> T:
        return func(self.raw)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        with self.raw.transaction():
            yield

    async def notifies(self, timeout: float) -> list[tuple[str, str]]:
        got = [(n.channel, n.payload) for n in self.raw.notifies(timeout=timeout, stop_after=1)]
        if got:
            got += [(n.channel, n.payload) for n in self.raw.notifies(timeout=0.0)]
        return got


class BlockingCursorConn(Conn):
    """`Conn` over the caller's sync cursor, for the `sync_*_ex` operations."""

    def __init__(self, cursor: psycopg.Cursor[tuple[Any, ...]]) -> None:
        self.raw = cursor

    async def execute(self, query: Query, params: Params = None) -> None:
        self.raw.execute(query, params)

    async def fetchall(self, query: Query, params: Params = None) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.raw.execute(query, params).fetchall()
        return rows


async def blocking_sleep(seconds: float) -> None:
    """The `sleep` of a blocking operation: blocks the calling thread."""
    time.sleep(seconds)  # noqa: ASYNC251 - never awaited on a loop: see run_blocking


def run_blocking(operation: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that only awaits `BlockingConn` methods (it never suspends)."""
    try:
        operation.send(None)
    except StopIteration as done:
        value: T = done.value
        return value
    operation.close()
    raise RuntimeError(
        "a sync_* operation awaited something other than its blocking connection"
    )  # pragma: no cover - a programming error in Chancy, not in the caller's code
