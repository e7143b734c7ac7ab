"""Chancy in an ASGI app (Starlette, FastAPI): open the app's pools for the app's lifetime.

::

    from fastapi import FastAPI
    from chancy.contrib.asgi import lifespan

    chancy = Chancy(dsn)
    app = FastAPI(lifespan=lifespan(chancy))

`lifespan(chancy)` opens the pools (and, with ``migrate=True``, migrates) when the server
starts and closes them when it stops; the app is also in ``request.state.chancy`` (Starlette's
lifespan state). Push from a request in the same transaction as the request's own writes with
`Chancy.push_many_ex` on a cursor of that transaction (docs/integrations.md).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from chancy.app import Chancy


def lifespan(
    chancy: Chancy, *, migrate: bool = False
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[dict[str, Any]]]:
    """An ASGI lifespan that keeps `chancy` open while the app runs (see the module doc)."""

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[dict[str, Any]]:
        async with chancy:
            if migrate:
                await chancy.migrate()
            yield {"chancy": chancy}

    return run
