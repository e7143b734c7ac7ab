"""The dashboard's ASGI app: authentication, the API's dispatch, the pages, the headers.

Everything is relative to the app's mount point (`scope["root_path"]`): links, assets, API
calls, the session cookie's path, and the live updates, so the app works at `/` and under any
prefix of a Starlette or FastAPI app, or behind a proxy given `--root-path`.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import secrets
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import psycopg
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from chancy.dashboard import _api, _charts, _data
from chancy.dashboard._auth import (
    Sessions,
    Throttle,
    check_hash,
    tokens_equal,
    verify_password,
)
from chancy.dashboard._schema import Invalid, check, openapi, parse_datetime
from chancy.errors import UnknownQueueError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from starlette.requests import Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from chancy.app import Chancy
    from chancy.dashboard._schema import Endpoint

HERE = Path(__file__).parent
#: Largest JSON body accepted (bytes).
MAX_BODY = 1 << 20
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
_PAGE_SIZES = (25, 50, 100, 200)


def _version() -> str:
    try:
        return importlib.metadata.version("chancy-queue")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "0"


@dataclasses.dataclass
class Settings:
    """One dashboard's configuration (`request.app.state.chancy_dashboard`)."""

    chancy: Chancy
    token: str | None
    users: dict[str, str]
    read_only: bool
    view: _data.View
    no_auth: bool
    sessions: Sessions
    title: str
    live_interval: float
    secure_cookies: bool | None
    version: str = dataclasses.field(default_factory=_version)
    throttle: Throttle = dataclasses.field(default_factory=Throttle)


class _Headers:
    """Adds the security headers to every answer (pure ASGI, so streaming is untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The dashboard's own mount point, before its inner mounts (/api/v1) extend it.
        scope["chancy_base"] = str(scope.get("root_path", "")).rstrip("/")
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = "/static/" in scope.get("path", "")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                extra = {
                    b"content-security-policy": CSP.encode(),
                    b"x-content-type-options": b"nosniff",
                    b"x-frame-options": b"DENY",
                    b"referrer-policy": b"same-origin",
                    b"cross-origin-opener-policy": b"same-origin",
                    b"cache-control": b"private, max-age=3600" if static else b"no-store",
                }
                headers += [(k, v) for k, v in extra.items() if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def base_path(request: Request) -> str:
    """Where the dashboard is mounted ("" at the root)."""
    return str(request.scope.get("chancy_base", request.scope.get("root_path", ""))).rstrip("/")


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _secure(request: Request, settings: Settings) -> bool:
    if settings.secure_cookies is not None:
        return settings.secure_cookies
    return request.url.scheme == "https"


def _set_session(response: Response, request: Request, session: dict[str, Any]) -> None:
    s = _settings(request)
    response.set_cookie(
        Sessions.cookie,
        s.sessions.dump(session),
        max_age=s.sessions.max_age,
        path=base_path(request) or "/",
        httponly=True,
        samesite="lax",
        secure=_secure(request, s),
    )


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.chancy_dashboard
    return settings


def identify(request: Request) -> dict[str, Any] | None:
    """Who makes the request: `{"user", "via", "csrf"}` (`via` is `bearer`, `session` or
    `open`), or None when not authenticated. A wrong Bearer token is never made up for by a
    cookie."""
    s = _settings(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and s.token and tokens_equal(given.strip(), s.token):
            return {"user": "token", "via": "bearer", "csrf": None}
        return None
    session = s.sessions.load(request.cookies.get(Sessions.cookie))
    if session is not None and session.get("user") is not None:
        if session["user"] == "token" and s.token is None:
            return None  # logged in with a token the app no longer has
        if session["user"] not in ("token", "anonymous") and session["user"] not in s.users:
            return None
        return {"user": session["user"], "via": "session", "csrf": session["csrf"]}
    if s.no_auth:
        return {
            "user": "anonymous",
            "via": "open",
            "csrf": session["csrf"] if session is not None else None,
        }
    return None


def _csrf_ok(request: Request, who: dict[str, Any]) -> bool:
    if who["via"] == "bearer":
        return True
    given = request.headers.get("x-csrf-token", "")
    return bool(who.get("csrf")) and tokens_equal(given, str(who["csrf"]))


# -- the API -----------------------------------------------------------------------------------


def _api_error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


async def _read_body(request: Request, ep: Endpoint) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise Invalid(f"the body is larger than {MAX_BODY} bytes")
    if ep.body is None:
        return None
    if not raw.strip():
        if ep.body_required:
            raise Invalid("a JSON body is required")
        return None
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and kind != "application/json":
        raise Invalid("the body must be JSON (Content-Type: application/json)")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Invalid("the body is not valid JSON") from None
    check(body, ep.body, "body")
    return body


def _dispatcher(endpoints: list[Endpoint]) -> Callable[[Request], Awaitable[Response]]:
    by_method = {ep.method: ep for ep in endpoints}
    allowed = ", ".join(sorted({*by_method, *(["HEAD"] if "GET" in by_method else [])}))

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        ep = by_method.get(method)
        if ep is None:
            return _api_error(405, f"{request.method} is not allowed here", Allow=allowed)
        return await _call(request, ep)

    return endpoint


async def _call(request: Request, ep: Endpoint) -> Response:
    s = _settings(request)
    if not ep.public:
        who = identify(request)
        if who is None:
            return _api_error(
                401,
                "not authenticated: send Authorization: Bearer <token>, or log in",
                **{"WWW-Authenticate": 'Bearer realm="chancy"'},
            )
        request.scope["chancy_identity"] = who
        if ep.mutation:
            if s.read_only:
                return _api_error(403, "the dashboard is read-only")
            if not _csrf_ok(request, who):
                return _api_error(
                    403, "missing or wrong X-CSRF-Token (cookie sessions need it to change things)"
                )
    try:
        params = ep.parse(request.path_params, request.query_params)
        body = await _read_body(request, ep)
        return await ep.handler(request, params, body)
    except Invalid as exc:
        return _api_error(400, str(exc))
    except UnknownQueueError as exc:
        return _api_error(404, str(exc))
    except ValueError as exc:  # the operator API's checks
        return _api_error(400, str(exc))
    except psycopg.errors.DataError as exc:  # a value PostgreSQL refuses (out of range...)
        return _api_error(400, f"refused by the database: {exc.diag.message_primary or exc}")


async def _openapi(request: Request) -> Response:
    s = _settings(request)
    return JSONResponse(
        openapi(
            _api.ENDPOINTS,
            title=f"{s.title} dashboard API",
            version=s.version,
            server=base_path(request) + "/api/v1",
        )
    )


async def _api_not_found(request: Request) -> Response:
    return _api_error(404, f"no such API route: {request.url.path}")


def _api_routes() -> list[Route]:
    grouped: dict[str, list[Endpoint]] = {}
    for ep in _api.ENDPOINTS:
        grouped.setdefault(ep.path, []).append(ep)
    routes = [
        Route("/openapi.json", _openapi, methods=["GET"]),
        *(
            Route(path, _dispatcher(eps), methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
            for path, eps in grouped.items()
        ),
        Route(
            "/{rest:path}",
            _api_not_found,
            methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"],
        ),
    ]
    return routes


# -- the pages ---------------------------------------------------------------------------------


def _ago(value: str | None) -> str:
    if not value:
        return "-"
    seconds = (datetime.now(UTC) - datetime.fromisoformat(value)).total_seconds()
    if abs(seconds) < 1:
        return "just now"
    return _span(abs(seconds)) + (" ago" if seconds >= 0 else " from now")


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _between(start: str | None, end: str | None) -> str:
    if not start or not end:
        return "-"
    return _span((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)  # pragma: no cover


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=_ago, when=_when, span=_span, between=_between, bytes=_bytes)
    env.filters["pretty"] = _pretty
    env.filters["tojson_attr"] = lambda v: json.dumps(v, separators=(",", ":"))
    env.globals["urlencode"] = urllib.parse.urlencode
    return env


_ENV = _environment()


def _page_session(request: Request) -> tuple[dict[str, Any], bool]:
    """The request's session (a new anonymous one, holding a CSRF token, when it has none
    valid) and whether it must be (re)sent."""
    s = _settings(request)
    session = s.sessions.load(request.cookies.get(Sessions.cookie))
    if session is None:
        return s.sessions.new(None), True
    return session, False


def _render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    nav: str = "",
) -> Response:
    s = _settings(request)
    session, fresh = _page_session(request)
    who = request.scope.get("chancy_identity")
    ctx = {
        "base": base_path(request),
        "title": s.title,
        "nav": nav,
        "user": who["user"] if who else None,
        "via": who["via"] if who else None,
        "csrf": session["csrf"],
        "read_only": s.read_only,
        "hide_args": s.view.hide_args,
        "live_interval": s.live_interval,
        "version": s.version,
        "request_path": request.url.path,
        "no_auth": s.no_auth,
        **context,
    }
    tpl = _ENV.get_template(template)
    if request.headers.get("x-chancy-live") == "1" and "live" in tpl.blocks:
        html = "".join(tpl.blocks["live"](tpl.new_context(ctx)))
    else:
        html = tpl.render(ctx)
    response = HTMLResponse(html, status_code=status)
    if fresh:
        _set_session(response, request, session)
    return response


def _page(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """A page: its visitor must be authenticated (else: to the login page)."""

    async def page(request: Request) -> Response:
        who = identify(request)
        if who is None:
            if request.headers.get("x-chancy-live") == "1":
                return Response("session ended", status_code=401)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            login = base_path(request) + "/login?" + urllib.parse.urlencode({"next": target})
            return RedirectResponse(login, status_code=303)
        request.scope["chancy_identity"] = who
        try:
            return await handler(request)
        except Invalid as exc:
            return _render(request, "error.html", {"message": str(exc)}, status=400)

    return page


def _history_charts(metrics: dict[str, Any], since: datetime) -> dict[str, str] | None:
    if not metrics["installed"]:
        return None
    data = _data.series(metrics["points"], resolution=metrics["resolution"], since=since)
    return {
        "throughput": _charts.bars(
            data["times"],
            [("succeeded", data["succeeded"], "ok"), ("failed", data["failed"], "bad")],
            "jobs finished per minute",
        ),
        "depth": _charts.line(data["times"], data["depth"], "jobs waiting or running", "depth"),
        "run_p95": _charts.line(data["times"], data["run_p95"], "run time p95 (s)", "latency"),
    }


async def overview_page(request: Request) -> Response:
    s = _settings(request)
    data = await _data.overview(s.chancy, s.view)
    since = datetime.now(UTC) - timedelta(hours=1)
    metrics = await _data.metrics(s.chancy, queue=None, since=since, resolution=60)
    return _render(
        request,
        "overview.html",
        {**data, "charts": _history_charts(metrics, since)},
        nav="overview",
    )


async def queues_page(request: Request) -> Response:
    s = _settings(request)
    return _render(request, "queues.html", {"queues": await _data.queues(s.chancy)}, nav="queues")


async def queue_page(request: Request) -> Response:
    s = _settings(request)
    name = request.path_params["name"]
    found = await _data.queue(s.chancy, name)
    if found is None:
        return _render(request, "error.html", {"message": f"No queue {name!r}."}, status=404)
    since = datetime.now(UTC) - timedelta(hours=1)
    metrics = await _data.metrics(s.chancy, queue=name, since=since, resolution=60)
    recent = await _data.jobs(s.chancy, {"queue": name}, limit=15, after=None, view=s.view)
    return _render(
        request,
        "queue.html",
        {"queue": found, "charts": _history_charts(metrics, since), "recent": recent["jobs"]},
        nav="queues",
    )


_FILTER_NAMES = ("queue", "state", "func", "since", "until", "error")


def _page_filters(request: Request) -> dict[str, str]:
    """The jobs page's filters as given (empty fields dropped), checked like the API's."""
    query = request.query_params
    given = {name: query[name].strip() for name in _FILTER_NAMES if query.get(name, "").strip()}
    for param in _api.FILTER_PARAMS:
        if param.name in given:
            value = given[param.name]
            if param.name in ("since", "until"):
                value = _local_time(value)
                given[param.name] = value
            check(value, param.schema, param.name)
    return given


def _local_time(value: str) -> str:
    """A time from the page's form: RFC 3339, or the `datetime-local` form (taken as UTC)."""
    try:
        parse_datetime(value)
        return value
    except Invalid:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(f"not a time: {value!r} (e.g. 2026-01-31T12:00 in UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


async def jobs_page(request: Request) -> Response:
    s = _settings(request)
    given = _page_filters(request)
    after = request.query_params.get("after") or None
    if after is not None:
        check(after, _schema_job_id(), "after")
    try:
        limit = int(request.query_params.get("limit", "50"))
    except ValueError:
        limit = 50
    limit = limit if limit in _PAGE_SIZES else 50
    filters: dict[str, Any] = dict(given)
    for key in ("since", "until"):
        if key in filters:
            filters[key] = parse_datetime(filters[key])
    page = await _data.jobs(s.chancy, filters, limit=limit, after=after, view=s.view)
    queue_names = [q["name"] for q in await _data.queues(s.chancy)]
    next_query = urllib.parse.urlencode({**given, "limit": limit, "after": page["next"]})
    return _render(
        request,
        "jobs.html",
        {
            **page,
            "filters": given,
            "filters_json": given,
            "limit": limit,
            "sizes": _PAGE_SIZES,
            "after": after,
            "next_query": next_query if page["next"] else None,
            "first_query": urllib.parse.urlencode({**given, "limit": limit}),
            "queue_names": queue_names,
            "states": ["pending", "running", "retrying", "succeeded", "failed"],
        },
        nav="jobs",
    )


def _schema_job_id() -> dict[str, Any]:
    from chancy.dashboard._schema import JOB_ID

    return JOB_ID


async def job_page(request: Request) -> Response:
    s = _settings(request)
    job_id = request.path_params["id"]
    check(job_id, _schema_job_id(), "job id")
    found = await _data.job(s.chancy, job_id, s.view)
    if found is None:
        return _render(request, "error.html", {"message": f"No job {job_id}."}, status=404)
    return _render(request, "job.html", {"job": found}, nav="jobs")


async def workers_page(request: Request) -> Response:
    s = _settings(request)
    return _render(
        request, "workers.html", {"workers": await _data.workers(s.chancy)}, nav="workers"
    )


async def schedules_page(request: Request) -> Response:
    s = _settings(request)
    return _render(
        request, "schedules.html", await _data.schedules(s.chancy, s.view), nav="schedules"
    )


def _safe_next(request: Request, target: str | None) -> str:
    """Where to go after logging in: a path of this dashboard, never another site."""
    base = base_path(request)
    if (
        target
        and target.startswith((base + "/") if base else "/")
        and not target.startswith("//")
        and "\\" not in target
        and not urllib.parse.urlsplit(target).netloc
    ):
        return target
    return (base or "") + "/"


async def login_page(request: Request) -> Response:
    s = _settings(request)
    if request.method == "GET":
        if identify(request) is not None and request.query_params.get("next"):
            return RedirectResponse(_safe_next(request, request.query_params["next"]), 303)
        return _render(
            request,
            "login.html",
            {
                "error": None,
                "next": _safe_next(request, request.query_params.get("next")),
                "has_token": s.token is not None,
                "has_users": bool(s.users),
            },
        )
    raw = await request.body()
    form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace")).items()}
    session, _ = _page_session(request)
    target = _safe_next(request, form.get("next"))

    def fail(message: str, status: int = 400) -> Response:
        return _render(
            request,
            "login.html",
            {
                "error": message,
                "next": target,
                "has_token": s.token is not None,
                "has_users": bool(s.users),
            },
            status=status,
        )

    if not tokens_equal(form.get("csrf", ""), session["csrf"]):
        return fail("The form expired; please try again.", 403)
    client = _client(request)
    if s.throttle.blocked(client):
        return fail("Too many failed attempts; wait a minute.", 429)
    user: str | None = None
    if form.get("token") and s.token and tokens_equal(form["token"], s.token):
        user = "token"
    elif form.get("username") in s.users and verify_password(
        form.get("password", ""), s.users[form["username"]]
    ):
        user = form["username"]
    if user is None:
        s.throttle.failed(client)
        return fail("Wrong credentials.", 401)
    s.throttle.succeeded(client)
    response = RedirectResponse(target, status_code=303)
    _set_session(response, request, s.sessions.new(user))  # a new CSRF token too
    return response


async def logout(request: Request) -> Response:
    s = _settings(request)
    raw = await request.body()
    form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace")).items()}
    session, _ = _page_session(request)
    if not tokens_equal(form.get("csrf", ""), session["csrf"]):
        return Response("the form expired", status_code=403)
    response = RedirectResponse(base_path(request) + "/login", status_code=303)
    _set_session(response, request, s.sessions.new(None))
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (a path no route takes): JSON under /api/, text elsewhere."""
    status = getattr(exc, "status_code", 500)
    detail = str(getattr(exc, "detail", "") or "error")
    if request.url.path.startswith(base_path(request) + "/api/"):
        return _api_error(status, detail)
    return Response(detail, status_code=status, media_type="text/plain")


async def not_found(request: Request) -> Response:
    if identify(request) is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return _render(request, "error.html", {"message": "No such page."}, status=404)


# -- the app -----------------------------------------------------------------------------------


def create_app(
    chancy: Chancy,
    *,
    token: str | None = None,
    users: Mapping[str, str] | None = None,
    read_only: bool = False,
    hide_args: bool = False,
    no_auth: bool = False,
    secret_key: str | bytes | None = None,
    title: str = "Chancy",
    live_interval: float = 3.0,
    secure_cookies: bool | None = None,
) -> Starlette:
    """The dashboard of `chancy` as an ASGI app (Starlette), to run with uvicorn or to mount
    under any prefix: ``Mount("/chancy", app=create_app(chancy, token=...))``.

    :param token: the token API clients send as ``Authorization: Bearer <token>``, and that a
        person may type on the login page.
    :param users: ``{name: hash}`` of people who log in with a password; the hashes come
        from `hash_password` (``chancy misc hash-password``), never the passwords.
    :param read_only: refuse every change (server-side), and show no button that makes one.
    :param hide_args: show no job's kwargs nor result (``"(hidden)"`` instead).
    :param no_auth: serve everyone without logging in: only for a dashboard reachable from
        the machine itself (the CLI allows it only on a loopback address) or behind the
        authentication of the app it is mounted in.
    :param secret_key: signs the session cookies (default: $CHANCY_DASHBOARD_SECRET, else
        random per process: sessions end when it restarts).
    :param live_interval: seconds between the pages' live updates.
    :param secure_cookies: mark the cookie Secure (default: when the request came over HTTPS).

    With neither `token`, `users` nor `no_auth`, `ValueError`: the dashboard is never open by
    accident. The pools of `chancy` open on first use; close them with the app that owns
    `chancy` (or use `chancy.contrib.asgi.lifespan`).
    """
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        raise ValueError("token: expected a string of at least 16 characters")
    checked_users = {str(name): check_hash(h) for name, h in (users or {}).items()}
    for name in checked_users:
        if not name or name in ("token", "anonymous") or ":" in name:
            raise ValueError(f"users: {name!r} is not a usable user name")
    if token is None and not checked_users and not no_auth:
        raise ValueError(
            "the dashboard needs token=, users= or (only where nobody else can reach it) "
            "no_auth=True"
        )
    if not live_interval > 0:
        raise ValueError("live_interval: expected seconds > 0")
    secret = secret_key or os.environ.get("CHANCY_DASHBOARD_SECRET") or secrets.token_bytes(32)
    settings = Settings(
        chancy=chancy,
        token=token,
        users=checked_users,
        read_only=bool(read_only),
        view=_data.View(hide_args=bool(hide_args)),
        no_auth=bool(no_auth),
        sessions=Sessions(secret.encode() if isinstance(secret, str) else secret),
        title=title,
        live_interval=float(live_interval),
        secure_cookies=secure_cookies,
    )
    routes = [
        Route("/", _page(overview_page), name="overview"),
        Route("/queues", _page(queues_page), name="queues"),
        Route("/queues/{name}", _page(queue_page), name="queue"),
        Route("/jobs", _page(jobs_page), name="jobs"),
        Route("/jobs/{id}", _page(job_page), name="job"),
        Route("/workers", _page(workers_page), name="workers"),
        Route("/schedules", _page(schedules_page), name="schedules"),
        Route("/login", login_page, methods=["GET", "POST"], name="login"),
        Route("/logout", logout, methods=["POST"], name="logout"),
        Mount("/api/v1", routes=_api_routes()),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        Route("/{rest:path}", not_found),
    ]
    app = Starlette(
        routes=routes, exception_handlers={404: _http_error, 405: _http_error, 400: _http_error}
    )
    app.state.chancy_dashboard = settings
    app.add_middleware(_Headers)
    return app
