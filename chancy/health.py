"""The worker's side HTTP port: `/healthz`, `/readyz` and `/metrics` (see docs/metrics.md).

* `/healthz` (liveness) never touches the database: it answers 200 while the event loop runs
  and the worker's actors are up, so a database outage never restarts the worker.
* `/readyz` (readiness) answers 200 when the database answers within `DB_TIMEOUT` seconds, the
  schema is up to date (a success is remembered), the last heartbeat is younger than
  `heartbeat_timeout`, and the notification listener is connected (or notifications are off).
* `/metrics` is the Prometheus text exposition (needs the `metrics` extra, else 501).

Both health endpoints answer a JSON body with each check. Bound to a loopback address (the
default), anyone on the host may read them. Bound elsewhere, `/metrics` and the detailed
bodies need `Authorization: Bearer <token>` (the token given to the worker); without it the
health endpoints answer only their status and "ok" or "unavailable", and `/metrics` 403.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import psycopg

from chancy import metrics as _metrics
from chancy._db import connect_error_reason
from chancy._http import Request, Response, is_loopback, parse_address, serve

if TYPE_CHECKING:
    from chancy.worker import Worker

#: Seconds the readiness check gives the database.
DB_TIMEOUT = 2.0


def _schema_behind(conn: psycopg.Connection, worker: Worker) -> list[str]:
    """Components whose applied schema version is below the latest (sync, in a thread)."""
    app = worker.chancy
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (app.tables.prefix + "schema_versions",)
    ).fetchone()
    applied: dict[str, int] = {}
    if row and row[0]:
        rows = conn.execute(app.tables.q("SELECT component, version FROM {schema_versions}"))
        applied = {name: version for name, version in rows.fetchall()}
    return [
        f"{name} at version {applied.get(name, 0)} of {len(migrations)}"
        for name, migrations in app._components()
        if applied.get(name, 0) < len(migrations)
    ]


class HealthServer:
    """The HTTP actor of a worker (`Worker(http="127.0.0.1:9464")`)."""

    def __init__(self, worker: Worker, address: str, token: str | None = None) -> None:
        self.worker = worker
        self.host, self.port = parse_address(address)
        self.loopback = is_loopback(self.host)
        self.token = token or None
        #: The port bound (after start; useful with port 0).
        self.bound_port: int | None = None
        self.metrics = _metrics.WorkerMetrics(worker) if _metrics.available() else None
        self._schema_ok = False
        self._limiter = anyio.CapacityLimiter(2)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.bound_port or self.port}"

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        log = self.worker.log
        if not self.loopback:
            log.warning(
                "http: serving health and metrics on non-loopback address %s%s",
                self.host,
                ""
                if self.token
                else " without a token: only bare health statuses are shown "
                "(set --http-token-file or CHANCY_HTTP_TOKEN)",
            )
        if self.metrics is not None:
            self.metrics.install()
        try:

            async def started_serving(*, task_status: anyio.abc.TaskStatus[int]) -> None:
                try:
                    await serve(self.host, self.port, self.handle, log=log, task_status=task_status)
                except OSError as exc:
                    if self.bound_port is not None:
                        raise
                    raise OSError(
                        exc.errno,
                        f"cannot serve http on {self.host}:{self.port}: {exc.strerror or exc}",
                    ) from exc

            async with anyio.create_task_group() as tg:
                self.bound_port = await tg.start(started_serving)
                log.info("http: health and metrics on %s", self.url)
                task_status.started()
        finally:
            if self.metrics is not None:
                self.metrics.uninstall()

    # -- routing -----------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        if self.loopback:
            return True
        if self.token is None:
            return False
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        )

    async def handle(self, request: Request) -> Response:
        if request.path == "/healthz":
            return self._health(request, *self.liveness())
        if request.path == "/readyz":
            return self._health(request, *await self.readiness())
        if request.path == "/metrics":
            return await self._metrics(request)
        return Response.text(404, "not found: try /healthz, /readyz or /metrics\n")

    def _health(self, request: Request, ok: bool, checks: dict[str, Any]) -> Response:
        status = 200 if ok else 503
        if not self._authorized(request):
            return Response.text(status, "ok\n" if ok else "unavailable\n")
        body: dict[str, Any] = {
            "status": "ok" if ok else "unavailable",
            "worker_id": self.worker.worker_id,
        }
        body["checks"] = checks
        return Response(status, json.dumps(body).encode() + b"\n", "application/json")

    async def _metrics(self, request: Request) -> Response:
        if not self._authorized(request):
            return Response.text(
                403,
                "forbidden: off loopback /metrics needs `Authorization: Bearer <token>`; give "
                "the worker a token with --http-token-file FILE or CHANCY_HTTP_TOKEN "
                "(Worker(http_token=...))\n",
            )
        if self.metrics is None:
            return Response.text(501, f"metrics need prometheus-client: {_metrics.INSTALL_HINT}\n")
        await self.metrics.refresh_queues()
        body, content_type = self.metrics.render()
        return Response(200, body, content_type)

    # -- checks ------------------------------------------------------------------------------

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        worker = self.worker
        actors = worker._started.is_set() and worker.manager is not None
        checks: dict[str, Any] = {
            "event_loop": {"ok": True},
            "actors": {"ok": actors, "running_jobs": len(worker.running_jobs())},
        }
        return actors, checks

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        worker = self.worker
        checks: dict[str, Any] = {}
        database, schema = await self._database()
        checks["database"] = database
        checks["schema"] = schema
        last = worker.heartbeat.last_beat if worker.heartbeat is not None else None
        age = None if last is None else time.monotonic() - last
        checks["heartbeat"] = {
            "ok": age is not None and age < worker.heartbeat_timeout,
            "age_seconds": None if age is None else round(age, 3),
            "timeout_seconds": worker.heartbeat_timeout,
        }
        listener = worker.listener
        if listener is None:
            checks["listener"] = {"ok": True, "notifications": False}
        else:
            checks["listener"] = {"ok": listener.connected, "notifications": True}
        live, _ = self.liveness()
        checks["actors"] = {"ok": live}
        return all(check["ok"] for check in checks.values()), checks

    async def _database(self) -> tuple[dict[str, Any], dict[str, Any]]:
        worker = self.worker
        check_schema = not self._schema_ok

        def probe() -> list[str] | None:
            with psycopg.connect(
                worker.chancy.dsn, connect_timeout=max(2, int(DB_TIMEOUT)), autocommit=True
            ) as conn:
                conn.execute(f"SET statement_timeout = {int(DB_TIMEOUT * 1000)}")
                conn.execute("SELECT 1")
                return _schema_behind(conn, worker) if check_schema else None

        started = time.monotonic()
        behind: list[str] | None = None
        error: str | None = None
        with anyio.move_on_after(DB_TIMEOUT + 0.5):
            try:
                behind = await anyio.to_thread.run_sync(
                    probe, abandon_on_cancel=True, limiter=self._limiter
                )
            except psycopg.Error as exc:
                error = connect_error_reason(exc)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                error = ""
        elapsed = round(time.monotonic() - started, 3)
        if error is None:
            error = f"no answer within {DB_TIMEOUT:g} s"
        if error:
            database = {"ok": False, "error": error, "seconds": elapsed}
            schema = {"ok": self._schema_ok, "checked": False}
            return database, schema
        database = {"ok": True, "seconds": elapsed}
        if check_schema:
            if behind:
                return database, {"ok": False, "behind": behind}
            self._schema_ok = True
        return database, {"ok": True}
