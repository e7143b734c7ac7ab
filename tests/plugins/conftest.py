"""Fixtures for the plugin tests: apps with chosen plugins on the test's own table prefix."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from chancy import Chancy
from chancy.plugin import Plugin

HERE = Path(__file__).parent
# Job modules of these tests (pjobs.py) must import in workers and their subprocesses.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from plugin_helpers import WorkerProcs  # noqa: E402


@pytest.fixture
async def make_app(dsn: str, prefix: str) -> AsyncIterator[Callable[..., object]]:
    """`await make_app(plugins=[...])`: an open, migrated app on the test's prefix."""
    async with AsyncExitStack() as stack:

        async def make(plugins: list[Plugin] | None = None, **kwargs: object) -> Chancy:
            app = Chancy(
                dsn,
                prefix=prefix,
                plugins=[] if plugins is None else plugins,
                poll_reconnect_timeout=10,
                **kwargs,  # type: ignore[arg-type]
            )
            await stack.enter_async_context(app)
            await app.migrate()
            return app

        yield make


@pytest.fixture
def procs(dsn: str, prefix: str, anyio_backend: str) -> Iterator[WorkerProcs]:
    """Worker subprocesses on the test's prefix and backend, stopped after the test."""
    group = WorkerProcs(dsn, prefix, anyio_backend)
    try:
        yield group
    finally:
        group.stop_all()
