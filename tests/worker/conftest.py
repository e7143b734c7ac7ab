"""Fixtures for the worker tests: workers with short intervals, on the test's own prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
import wjobs
from support import FAST

from chancy import Chancy
from chancy.worker import Worker


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
