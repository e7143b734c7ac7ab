"""The dashboard: a web UI and JSON API over queues, jobs, workers and schedules (the
`dashboard` extra: Starlette, Jinja2, uvicorn).

::

    from chancy.dashboard import create_app

    app = create_app(chancy, token="a long random token")    # an ASGI app

Run it with ``chancy --app mod:chancy dashboard`` (docs/dashboard.md), or mount it under a
prefix of a Starlette/FastAPI app: ``Mount("/chancy", app=create_app(chancy, ...))``.

`create_app` is imported on first use, so that the command line can describe the dashboard's
options without the extra installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chancy.dashboard._auth import hash_password, verify_password

if TYPE_CHECKING:
    from chancy.dashboard._app import create_app


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from chancy.dashboard._app import create_app

        return create_app
    raise AttributeError(f"module 'chancy.dashboard' has no attribute {name!r}")


__all__ = ["create_app", "hash_password", "verify_password"]
