"""Helpers of the dashboard tests (a module of its own: `conftest` names several modules)."""

from __future__ import annotations

import re

import httpx

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def form_csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


async def log_in(client: httpx.AsyncClient, prefix: str = "", **fields: str) -> str:
    """Log in through the login form (as a browser does); returns the session's CSRF token."""
    page = await client.get(f"{prefix}/login")
    assert page.status_code == 200, page.text
    answer = await client.post(
        f"{prefix}/login", data={"csrf": form_csrf(page.text), "next": f"{prefix}/", **fields}
    )
    assert answer.status_code == 303, answer.text
    session = await client.get(f"{prefix}/api/v1/session")
    assert session.status_code == 200, session.text
    csrf: str = session.json()["csrf"]
    return csrf
