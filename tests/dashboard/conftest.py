"""Fixtures of the dashboard tests: the app in process (httpx over ASGI, on both backends),
and helpers to log in like a browser."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:  # dashapp, dashjobs
    sys.path.insert(0, str(HERE))

pytest.importorskip("starlette")
pytest.importorskip("jinja2")

import httpx  # noqa: E402
from dashsupport import AUTH, TOKEN  # noqa: E402

from chancy import Chancy  # noqa: E402
from chancy.dashboard import create_app  # noqa: E402


@pytest.fixture
async def client_for(chancy: Chancy) -> AsyncIterator[Callable[..., Awaitable[httpx.AsyncClient]]]:
    """`await client_for(**create_app options)`: an HTTP client of a dashboard of `chancy`
    (token auth unless the options say otherwise)."""
    clients: list[httpx.AsyncClient] = []

    async def make(app: Any = None, **options: Any) -> httpx.AsyncClient:
        if app is None:
            options.setdefault("token", TOKEN)
            app = create_app(chancy, **options)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dash")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def api(client_for: Callable[..., Awaitable[httpx.AsyncClient]]) -> httpx.AsyncClient:
    """A client of a dashboard with a token, sending the token."""
    client = await client_for()
    client.headers.update(AUTH)
    return client
