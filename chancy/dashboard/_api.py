"""The JSON API under `/api/v1`: each endpoint's contract (`_schema.Endpoint`) and handler.

Handlers get the checked parameters and body; they answer what `_data` reads or what the
operator API (`Chancy.retry_jobs`, `pause_queue`, ...) did. A bulk operation answers every job
it was asked about: `done` (ids acted on) and `skipped` (id: why not).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
from starlette.responses import JSONResponse, Response

from chancy.dashboard import _data
from chancy.dashboard._schema import (
    ANY_JSON,
    JOB_ID,
    QUEUE_NAME,
    STATE,
    TEXT,
    WHEN,
    Endpoint,
    Invalid,
    Param,
    array,
    nullable,
    obj,
    parse_datetime,
)
from chancy.errors import UnknownQueueError
from chancy.queue import Queue

if TYPE_CHECKING:
    from starlette.requests import Request

    from chancy.admin import JobsResult
    from chancy.dashboard._app import Settings

#: Most jobs one bulk request may name by id.
MAX_IDS = 1000

# -- schemas of the answers ------------------------------------------------------------------

STR = {"type": "string"}
NULL_STR = nullable(STR)
INT = {"type": "integer"}
NULL_INT = nullable(INT)
NULL_NUM = nullable({"type": "number"})

JOB_SUMMARY = obj(
    {
        "id": STR,
        "queue": STR,
        "func": STR,
        "state": STATE,
        "priority": INT,
        "attempts": INT,
        "max_attempts": INT,
        "pushed_at": STR,
        "scheduled_at": NULL_STR,
        "started_at": NULL_STR,
        "completed_at": NULL_STR,
        "kwargs": {**ANY_JSON, "description": "the job's keyword arguments, or '(hidden)'"},
        "last_error": NULL_STR,
    },
    ("id", "queue", "func", "state", "attempts", "pushed_at", "kwargs"),
)
JOB_DETAIL = {
    **JOB_SUMMARY,
    "properties": {
        **JOB_SUMMARY["properties"],
        "unique_key": NULL_STR,
        "meta": {"type": "object"},
        "result": ANY_JSON,
        "limits": array({"type": "object"}),
        "errors": array(
            obj({"attempt": INT, "traceback": STR, "at": NULL_STR}, ("attempt", "traceback"))
        ),
        "malformed": NULL_STR,
        "timeline": array(
            obj(
                {"at": NULL_STR, "event": STR, "attempt": NULL_INT, "detail": NULL_STR},
                ("event",),
            )
        ),
    },
}
QUEUE_ROW = obj(
    {
        "name": STR,
        "declared": {"type": "boolean"},
        "state": nullable({"type": "string", "enum": ["active", "paused"]}),
        "resume_at": NULL_STR,
        "concurrency": NULL_INT,
        "executor": NULL_STR,
        "executor_name": NULL_STR,
        "tags": array(STR),
        "polling_interval": NULL_NUM,
        "rate_limit": NULL_INT,
        "rate_limit_window": NULL_INT,
        "pending": INT,
        "retrying": INT,
        "running": INT,
        "oldest_runnable_age": NULL_NUM,
        "succeeded_last_minute": INT,
        "failed_last_minute": INT,
        "succeeded_last_hour": INT,
        "failed_last_hour": INT,
        "workers": array(STR),
    },
    ("name", "declared", "pending", "retrying", "running"),
)
WORKER = obj(
    {
        "worker_id": STR,
        "hostname": STR,
        "pid": INT,
        "alive": {"type": "boolean"},
        "leader": {"type": "boolean"},
        "tags": array(STR),
        "queues": array(STR),
        "queue_status": {"type": "object"},
        "started_at": NULL_STR,
        "last_seen": NULL_STR,
        "expires_at": NULL_STR,
        "running": array(
            obj({"id": STR, "queue": STR, "func": STR, "started_at": NULL_STR, "attempt": INT})
        ),
        "children": array(
            obj(
                {
                    "queue": STR,
                    "pid": NULL_INT,
                    "rss": NULL_INT,
                    "jobs_run": NULL_INT,
                    "job": NULL_STR,
                }
            )
        ),
    },
    ("worker_id", "alive", "leader", "queues", "running", "children"),
)
JOBS_RESULT = obj(
    {
        "done": array(STR, description="ids of the jobs acted on"),
        "skipped": {
            "type": "object",
            "additionalProperties": STR,
            "description": "id: why that job was not acted on",
        },
    },
    ("done", "skipped"),
)
METRICS = obj(
    {
        "installed": {"type": "boolean"},
        "resolution": INT,
        "points": array(
            obj(
                {
                    "queue": STR,
                    "bucket": STR,
                    "succeeded": INT,
                    "failed": INT,
                    "retried": INT,
                    "run_p50": NULL_NUM,
                    "run_p95": NULL_NUM,
                    "wait_p50": NULL_NUM,
                    "wait_p95": NULL_NUM,
                    "depth": INT,
                }
            )
        ),
    },
    ("installed", "points"),
)

# -- schemas of the requests -----------------------------------------------------------------

FILTER_PARAMS = (
    Param("queue", "query", QUEUE_NAME, "only jobs of this queue"),
    Param("state", "query", STATE, "only jobs in this state"),
    Param("func", "query", TEXT, "only jobs of this function (its dotted path)"),
    Param("since", "query", WHEN, "pushed at or after this time"),
    Param("until", "query", WHEN, "pushed before this time"),
    Param("error", "query", TEXT, "one of the job's errors contains this text (any case)"),
)
FILTER = obj(
    {
        "queue": QUEUE_NAME,
        "state": STATE,
        "func": TEXT,
        "since": WHEN,
        "until": WHEN,
        "error": TEXT,
    },
    additionalProperties=False,
)


def _bulk_body(extra: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return obj(
        {
            "ids": array(JOB_ID, maxItems=MAX_IDS, minItems=1),
            "where": {**FILTER, "minProperties": 1},
            "all": {"type": "boolean", "description": "true: every job (no ids, no where)"},
            **extra,
        },
        required,
        additionalProperties=False,
        oneOf=[
            {"required": ["ids"]},
            {"required": ["where"]},
            {"required": ["all"], "properties": {"all": {"enum": [True]}}},
        ],
        description="the jobs: their ids, or every job `where` matches, or all: true",
    )


MOVE_TO = {"queue": QUEUE_NAME}
PRIORITY = {"priority": {"type": "integer", "minimum": -(2**31 - 1), "maximum": 2**31 - 1}}
INCLUDE_RUNNING = {"include_running": {"type": "boolean"}}
QUEUE_SETTINGS = obj(
    {
        "concurrency": {"type": "integer", "minimum": 1, "maximum": 10_000},
        "tags": array({**TEXT, "maxLength": 200}, maxItems=50, minItems=1),
        "polling_interval": {"type": "integer", "minimum": 1, "maximum": 86_400},
        "rate_limit": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1, "nullable": True},
        "rate_limit_window": {
            "type": "integer",
            "minimum": 1,
            "maximum": 2**31 - 1,
            "nullable": True,
        },
        "executor": {
            "type": "string",
            "enum": sorted(_data.EXECUTORS),
            "description": "one of the built-in executors (others: declare them in code)",
        },
    },
    additionalProperties=False,
    description="settings to change (or, for a new queue, to declare it with)",
)
PAUSE = obj(
    {
        "resume_at": {**WHEN, "description": "resume by itself at this time"},
        "resume_in": {
            "type": "number",
            "minimum": 1,
            "maximum": 366 * 86400,
            "description": "resume by itself after this many seconds",
        },
    },
    additionalProperties=False,
    maxProperties=1,
    description="resume_at or resume_in (or neither: paused until resumed)",
)


def _json(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(value, status_code=status)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _result(result: JobsResult) -> JSONResponse:
    return _json({"done": list(result.done), "skipped": dict(result.skipped)})


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.chancy_dashboard
    return settings


# -- handlers --------------------------------------------------------------------------------


async def health(request: Request, params: dict[str, Any], body: Any) -> Response:
    chancy = _settings(request).chancy
    try:
        with anyio.fail_after(2):
            async with chancy.db.connection() as conn:
                await conn.fetchone("SELECT 1")
    except Exception as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        return _json({"status": "unavailable", "error": f"database: {reason}"}, 503)
    return _json({"status": "ok", "database": "ok"})


async def session(request: Request, params: dict[str, Any], body: Any) -> Response:
    s = _settings(request)
    who = request.scope.get("chancy_identity") or {}
    return _json(
        {
            "user": who.get("user"),
            "auth": who.get("via"),
            "csrf": who.get("csrf"),
            "read_only": s.read_only,
            "hide_args": s.view.hide_args,
            "version": s.version,
        }
    )


async def overview(request: Request, params: dict[str, Any], body: Any) -> Response:
    s = _settings(request)
    return _json(await _data.overview(s.chancy, s.view))


async def list_queues(request: Request, params: dict[str, Any], body: Any) -> Response:
    return _json({"queues": await _data.queues(_settings(request).chancy)})


async def get_queue(request: Request, params: dict[str, Any], body: Any) -> Response:
    found = await _data.queue(_settings(request).chancy, params["name"])
    if found is None:
        return _error(404, f"no queue {params['name']!r}")
    return _json(found)


async def put_queue(request: Request, params: dict[str, Any], body: Any) -> Response:
    chancy = _settings(request).chancy
    changes = dict(body or {})
    try:
        current = await chancy.get_queue(params["name"])
        created = False
    except UnknownQueueError:
        current = Queue(params["name"])
        created = True
    if "tags" in changes:
        changes["tags"] = set(changes["tags"])
    if "rate_limit" in changes and changes["rate_limit"] is None:
        changes["rate_limit_window"] = None
    if "rate_limit_window" in changes and changes["rate_limit_window"] is None:
        changes["rate_limit"] = None
    limit = changes.get("rate_limit", current.rate_limit)
    if limit is None:  # a window without a limit means nothing: no rate limit
        changes["rate_limit_window"] = None
    elif changes.get("rate_limit_window", current.rate_limit_window) is None:
        changes["rate_limit_window"] = 60
    try:
        updated = dataclasses.replace(current, **changes)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    await chancy.declare(updated, upsert=True)
    found = await _data.queue(chancy, params["name"])
    return _json(found, 201 if created else 200)


async def delete_queue(request: Request, params: dict[str, Any], body: Any) -> Response:
    chancy = _settings(request).chancy
    purge = params.get("purge_jobs", True)
    try:
        await chancy.delete_queue(params["name"], purge_jobs=purge)
    except UnknownQueueError:
        return _error(404, f"no queue {params['name']!r}")
    return _json({"deleted": params["name"], "purged_jobs": purge})


async def pause_queue(request: Request, params: dict[str, Any], body: Any) -> Response:
    chancy = _settings(request).chancy
    body = body or {}
    if "resume_at" in body and "resume_in" in body:
        raise Invalid("give resume_at or resume_in, not both")
    resume: datetime | timedelta | None = None
    if "resume_at" in body:  # a time already past: paused, and resumed at once
        resume = parse_datetime(body["resume_at"])
    elif "resume_in" in body:
        resume = timedelta(seconds=body["resume_in"])
    try:
        await chancy.pause_queue(params["name"], resume_at=resume)
    except UnknownQueueError:
        return _error(404, f"no queue {params['name']!r}")
    return _json(await _data.queue(chancy, params["name"]))


async def resume_queue(request: Request, params: dict[str, Any], body: Any) -> Response:
    chancy = _settings(request).chancy
    try:
        await chancy.resume_queue(params["name"])
    except UnknownQueueError:
        return _error(404, f"no queue {params['name']!r}")
    return _json(await _data.queue(chancy, params["name"]))


def _filters(params: dict[str, Any]) -> dict[str, Any]:
    filters: dict[str, Any] = {
        k: params[k] for k in ("queue", "state", "func", "error") if k in params
    }
    for key in ("since", "until"):
        if key in params:
            filters[key] = parse_datetime(params[key])
    return filters


async def list_jobs(request: Request, params: dict[str, Any], body: Any) -> Response:
    s = _settings(request)
    page = await _data.jobs(
        s.chancy,
        _filters(params),
        limit=params.get("limit", 50),
        after=params.get("after"),
        view=s.view,
    )
    return _json(page)


async def get_job(request: Request, params: dict[str, Any], body: Any) -> Response:
    s = _settings(request)
    found = await _data.job(s.chancy, params["id"], s.view)
    if found is None:
        return _error(404, f"no job {params['id']}")
    return _json(found)


async def delete_job(request: Request, params: dict[str, Any], body: Any) -> Response:
    chancy = _settings(request).chancy
    include = params.get("include_running", False)
    result = await chancy.purge_jobs([params["id"]], include_running=include)
    if not result.done and result.skipped.get(params["id"]) == "no such job":
        return _error(404, f"no job {params['id']}")
    return _result(result)


async def retry_job(request: Request, params: dict[str, Any], body: Any) -> Response:
    result = await _settings(request).chancy.retry_jobs([params["id"]])
    if not result.done and result.skipped.get(params["id"]) == "no such job":
        return _error(404, f"no job {params['id']}")
    return _result(result)


async def cancel_job(request: Request, params: dict[str, Any], body: Any) -> Response:
    chancy = _settings(request).chancy
    found = await chancy.get_job(params["id"])
    if found is None:
        return _error(404, f"no job {params['id']}")
    if found.is_finished:
        return _json({"done": [], "skipped": {found.id: f"job is {found.state.value}"}})
    await chancy.cancel_job(found.id)
    return _json({"done": [found.id], "skipped": {}})


async def move_job(request: Request, params: dict[str, Any], body: Any) -> Response:
    result = await _settings(request).chancy.move_jobs([params["id"]], body["queue"])
    if not result.done and result.skipped.get(params["id"]) == "no such job":
        return _error(404, f"no job {params['id']}")
    return _result(result)


async def reprioritize_job(request: Request, params: dict[str, Any], body: Any) -> Response:
    result = await _settings(request).chancy.reprioritize_jobs([params["id"]], body["priority"])
    if not result.done and result.skipped.get(params["id"]) == "no such job":
        return _error(404, f"no job {params['id']}")
    return _result(result)


def _target(body: dict[str, Any]) -> dict[str, Any]:
    """The `refs`, or `where`/`all`, arguments of a bulk operation's (checked) body."""
    if "ids" in body:
        return {"refs": body["ids"]}
    if "where" in body:
        return {"where": _data.job_filter(_filters(body["where"]))}
    return {"all": True}


async def bulk_retry(request: Request, params: dict[str, Any], body: Any) -> Response:
    return _result(await _settings(request).chancy.retry_jobs(**_target(body)))


async def bulk_purge(request: Request, params: dict[str, Any], body: Any) -> Response:
    include = bool(body.get("include_running"))
    chancy = _settings(request).chancy
    return _result(await chancy.purge_jobs(**_target(body), include_running=include))


async def bulk_move(request: Request, params: dict[str, Any], body: Any) -> Response:
    chancy = _settings(request).chancy
    return _result(await chancy.move_jobs(**_target(body), queue=body["queue"]))


async def bulk_reprioritize(request: Request, params: dict[str, Any], body: Any) -> Response:
    chancy = _settings(request).chancy
    return _result(await chancy.reprioritize_jobs(**_target(body), priority=body["priority"]))


async def workers(request: Request, params: dict[str, Any], body: Any) -> Response:
    rows = await _data.workers(_settings(request).chancy)
    leader = next((w["worker_id"] for w in rows if w["leader"]), None)
    return _json({"workers": rows, "leader": leader})


async def schedules(request: Request, params: dict[str, Any], body: Any) -> Response:
    s = _settings(request)
    return _json(await _data.schedules(s.chancy, s.view))


async def metrics(request: Request, params: dict[str, Any], body: Any) -> Response:
    resolution = params.get("resolution", 60)
    since: datetime | timedelta = (
        parse_datetime(params["since"]) if "since" in params else timedelta(seconds=60 * resolution)
    )
    found = await _data.metrics(
        _settings(request).chancy, queue=params.get("queue"), since=since, resolution=resolution
    )
    return _json(found)


# -- the endpoints ---------------------------------------------------------------------------

NAME = Param("name", "path", QUEUE_NAME, required=True)
ID = Param("id", "path", JOB_ID, required=True)

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        "/health",
        "health",
        "Whether the dashboard can reach the database (unauthenticated, for probes)",
        health,
        obj({"status": STR, "database": STR}, ("status",)),
        public=True,
        extra_statuses=(503,),
    ),
    Endpoint(
        "GET",
        "/session",
        "session",
        "Who is asking, how, the CSRF token of a cookie session, and the dashboard's modes",
        session,
        obj(
            {
                "user": NULL_STR,
                "auth": NULL_STR,
                "csrf": NULL_STR,
                "read_only": {"type": "boolean"},
                "hide_args": {"type": "boolean"},
                "version": STR,
            },
            ("read_only", "hide_args"),
        ),
    ),
    Endpoint(
        "GET",
        "/overview",
        "overview",
        "Every queue's figures, the workers, recent failures and totals",
        overview,
        obj(
            {
                "queues": array(QUEUE_ROW),
                "workers": array(WORKER),
                "failures": array(JOB_SUMMARY),
                "totals": {"type": "object"},
            },
            ("queues", "workers", "failures", "totals"),
        ),
    ),
    Endpoint(
        "GET",
        "/queues",
        "list_queues",
        "Every queue: declared, or holding unfinished or recently finished jobs",
        list_queues,
        obj({"queues": array(QUEUE_ROW)}, ("queues",)),
    ),
    Endpoint("GET", "/queues/{name}", "get_queue", "One queue", get_queue, QUEUE_ROW, (NAME,)),
    Endpoint(
        "PUT",
        "/queues/{name}",
        "put_queue",
        "Change a queue's settings (declare it when new): concurrency, tags, rate limit, ...",
        put_queue,
        QUEUE_ROW,
        (NAME,),
        body=QUEUE_SETTINGS,
        body_required=True,
        mutation=True,
        also_ok=(201,),
        description="Answers 201 when the queue was declared by this call.",
    ),
    Endpoint(
        "DELETE",
        "/queues/{name}",
        "delete_queue",
        "Delete a queue and (unless purge_jobs=false) its jobs",
        delete_queue,
        obj({"deleted": STR, "purged_jobs": {"type": "boolean"}}, ("deleted",)),
        (NAME, Param("purge_jobs", "query", {"type": "boolean"}, "default true")),
        mutation=True,
    ),
    Endpoint(
        "POST",
        "/queues/{name}/pause",
        "pause_queue",
        "Pause a queue, for good or until resume_at / for resume_in seconds",
        pause_queue,
        QUEUE_ROW,
        (NAME,),
        body=PAUSE,
        mutation=True,
    ),
    Endpoint(
        "POST",
        "/queues/{name}/resume",
        "resume_queue",
        "Resume a paused queue now",
        resume_queue,
        QUEUE_ROW,
        (NAME,),
        mutation=True,
    ),
    Endpoint(
        "POST",
        "/jobs/retry",
        "retry_jobs",
        "Run finished jobs again (by ids or by filter)",
        bulk_retry,
        JOBS_RESULT,
        body=_bulk_body({}),
        body_required=True,
        mutation=True,
    ),
    Endpoint(
        "POST",
        "/jobs/purge",
        "purge_jobs",
        "Delete jobs (by ids or by filter); running ones only with include_running",
        bulk_purge,
        JOBS_RESULT,
        body=_bulk_body(INCLUDE_RUNNING),
        body_required=True,
        mutation=True,
    ),
    Endpoint(
        "POST",
        "/jobs/move",
        "move_jobs",
        "Move jobs that are not running to another queue (by ids or by filter)",
        bulk_move,
        JOBS_RESULT,
        body=_bulk_body(MOVE_TO, ("queue",)),
        body_required=True,
        mutation=True,
    ),
    Endpoint(
        "POST",
        "/jobs/reprioritize",
        "reprioritize_jobs",
        "Change the priority of jobs that are not running (by ids or by filter)",
        bulk_reprioritize,
        JOBS_RESULT,
        body=_bulk_body(PRIORITY, ("priority",)),
        body_required=True,
        mutation=True,
    ),
    Endpoint(
        "GET",
        "/jobs",
        "list_jobs",
        "Jobs, newest first, matching every filter given; keyset pages with after=<next>",
        list_jobs,
        obj({"jobs": array(JOB_SUMMARY), "next": NULL_STR}, ("jobs", "next")),
        (
            *FILTER_PARAMS,
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}),
            Param("after", "query", JOB_ID, "the `next` of the previous page"),
        ),
    ),
    Endpoint("GET", "/jobs/{id}", "get_job", "One job in full", get_job, JOB_DETAIL, (ID,)),
    Endpoint(
        "DELETE",
        "/jobs/{id}",
        "delete_job",
        "Delete a job (a running one only with include_running=true)",
        delete_job,
        JOBS_RESULT,
        (ID, Param("include_running", "query", {"type": "boolean"})),
        mutation=True,
    ),
    Endpoint(
        "POST",
        "/jobs/{id}/retry",
        "retry_job",
        "Run a finished job again",
        retry_job,
        JOBS_RESULT,
        (ID,),
        mutation=True,
    ),
    Endpoint(
        "POST",
        "/jobs/{id}/cancel",
        "cancel_job",
        "Cancel a job: a waiting one fails at once, a running one is stopped",
        cancel_job,
        JOBS_RESULT,
        (ID,),
        mutation=True,
    ),
    Endpoint(
        "POST",
        "/jobs/{id}/move",
        "move_job",
        "Move a job that is not running to another queue",
        move_job,
        JOBS_RESULT,
        (ID,),
        body=obj(MOVE_TO, ("queue",), additionalProperties=False),
        body_required=True,
        mutation=True,
    ),
    Endpoint(
        "POST",
        "/jobs/{id}/reprioritize",
        "reprioritize_job",
        "Change the priority of a job that is not running",
        reprioritize_job,
        JOBS_RESULT,
        (ID,),
        body=obj(PRIORITY, ("priority",), additionalProperties=False),
        body_required=True,
        mutation=True,
    ),
    Endpoint(
        "GET",
        "/workers",
        "list_workers",
        "Every worker: alive or dead, its queues, running jobs and child processes",
        workers,
        obj({"workers": array(WORKER), "leader": NULL_STR}, ("workers", "leader")),
    ),
    Endpoint(
        "GET",
        "/schedules",
        "list_schedules",
        "The cron schedules with their next and last runs (the Cron plugin)",
        schedules,
        obj(
            {
                "installed": {"type": "boolean"},
                "schedules": array(
                    obj(
                        {
                            "name": STR,
                            "cron": STR,
                            "timezone": NULL_STR,
                            "func": STR,
                            "queue": STR,
                            "kwargs": ANY_JSON,
                            "next_run": NULL_STR,
                            "last_run": NULL_STR,
                        }
                    )
                ),
            },
            ("installed", "schedules"),
        ),
    ),
    Endpoint(
        "GET",
        "/metrics",
        "metrics",
        "The metric history (the Metrics plugin): points per queue since a time",
        metrics,
        METRICS,
        (
            Param("queue", "query", QUEUE_NAME, "one queue (default: all)"),
            Param("since", "query", WHEN, "default: 60 points back"),
            Param("resolution", "query", {"type": "integer", "enum": [10, 60, 3600]}),
        ),
    ),
]

__all__ = ["ENDPOINTS"]
