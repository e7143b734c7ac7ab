"""Fixtures for the worker tests: workers with short intervals, on the test's own prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest
import wjobs

from chancy import Chancy
from chancy.worker import Worker

FAST = {
    "heartbeat_poll_interval": 1,
    "heartbeat_timeout": 5,
    "queue_change_poll_interval": 1,
    "shutdown_timeout": 5,
    "register_signal_handlers": False,
}


@pytest.fixture(autouse=True)
def _reset_runs() -> None:
    wjobs.reset()


@pytest.fixture
async def start_worker(chancy: Chancy) -> AsyncIterator[Callable[..., Awaitable[Worker]]]:
    """`await start_worker(**options)`: a running worker (short intervals), stopped after."""
    async with AsyncExitStack() as stack:

        async def start(app: Chancy | None = None, **options: Any) -> Worker:
            worker = Worker(app or chancy, **{**FAST, **options})
            await stack.enter_async_context(worker)
            return worker

        yield start


async def eventually(
    predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.02
) -> Any:
    """Wait until `predicate()` (sync or async) is truthy; fails after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while True:
            value = predicate()
            if isinstance(value, Awaitable):
                value = await value
            if value:
                return value
            await anyio.sleep(interval)


async def job_row(chancy: Chancy, job_id: str, *columns: str) -> tuple:
    async with chancy.db.connection() as conn:
        row = await conn.fetchone(
            chancy.tables.q("SELECT " + ", ".join(columns) + " FROM {jobs} WHERE id = %s"),
            (job_id,),
        )
    assert row is not None
    return row


async def fetch(chancy: Chancy, query: str, params: Any = None) -> list[tuple]:
    async with chancy.db.connection() as conn:
        return await conn.fetchall(chancy.tables.q(query), params)
