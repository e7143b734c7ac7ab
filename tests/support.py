"""Helpers shared by the whole suite (import them with `from support import ...`).

`tests/` is on `sys.path` (pytest puts the folder of the top conftest.py there), so this module
has one unambiguous name, unlike `conftest` of which every folder has its own.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from chancy import Chancy

#: Worker options with short intervals, for tests.
FAST: dict[str, Any] = {
    "heartbeat_poll_interval": 1,
    "heartbeat_timeout": 5,
    "queue_change_poll_interval": 1,
    "shutdown_timeout": 5,
    "register_signal_handlers": False,
}


async def eventually(
    predicate: Callable[[], Any], timeout: float = 10, what: str = "", *, interval: float = 0.02
) -> Any:
    """Wait until `predicate()` (sync, or returning an awaitable) is truthy and return that
    value; fails (`TimeoutError`) after `timeout` seconds."""
    try:
        with anyio.fail_after(timeout):
            while True:
                value = predicate()
                if isinstance(value, Awaitable):
                    value = await value
                if value:
                    return value
                await anyio.sleep(interval)
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout} s waiting for {what or predicate}") from None


def wait_until(
    predicate: Callable[[], Any], timeout: float = 30, what: str = "", *, interval: float = 0.01
) -> Any:
    """The blocking `eventually`, for tests that drive real processes from plain code."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


async def job_row(chancy: Chancy, job_id: str, *columns: str) -> tuple[Any, ...]:
    """The given columns of one job's row, read straight from the table."""
    async with chancy.db.connection() as conn:
        row = await conn.fetchone(
            chancy.tables.q("SELECT " + ", ".join(columns) + " FROM {jobs} WHERE id = %s"),
            (job_id,),
        )
    assert row is not None, f"no job {job_id}"
    return row


async def fetch(chancy: Chancy, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of `query`, whose `{jobs}`-style fields name the app's tables."""
    async with chancy.db.connection() as conn:
        return await conn.fetchall(chancy.tables.q(query), params)
