"""What the dashboard shows, read through the operator API and made JSON-ready.

The JSON API answers these dictionaries as they are, and the pages render the very same
dictionaries, so a page never shows what the API would not (and `hide_args` masks both).
Every read is bounded: listing jobs is keyset-paginated on the time-ordered id, recent failures
take one index probe per queue, and the figures come from `Chancy.queue_stats` (unfinished jobs
and the last hour only).
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from chancy import _sql
from chancy.admin import JobFilter
from chancy.plugins.leadership import current_leader

if TYPE_CHECKING:
    from chancy.admin import QueueStats
    from chancy.app import Chancy
    from chancy.job import QueuedJob
    from chancy.queue import Queue

HIDDEN = "(hidden)"
#: Shortest names of the built-in executors.
EXECUTORS = {
    "chancy.executors.asyncex.AsyncExecutor": "async",
    "chancy.executors.thread.ThreadedExecutor": "threaded",
    "chancy.executors.process.ProcessExecutor": "process",
    "chancy.executors.sub.SubInterpreterExecutor": "sub-interpreter",
}


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def pushed_at(job_id: str) -> datetime:
    """When a job was pushed, read from its time-ordered (UUIDv7) id."""
    ms = uuid.UUID(job_id).int >> 80
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclasses.dataclass(frozen=True)
class View:
    """How the app shows jobs: `hide_args` masks kwargs and results."""

    hide_args: bool = False


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else ""


def job_summary(job: QueuedJob, view: View) -> dict[str, Any]:
    """A job as a row of a list: no errors' full text, the last error's last line."""
    last_error = job.errors[-1] if job.errors else None
    return {
        "id": job.id,
        "queue": job.queue,
        "func": job.func,
        "state": job.state.value,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "pushed_at": iso(pushed_at(job.id)),
        "scheduled_at": iso(job.scheduled_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.completed_at),
        "kwargs": HIDDEN if view.hide_args else job.kwargs,
        "last_error": _last_line(str(last_error.get("traceback", ""))) if last_error else None,
    }


def _error_time(value: Any) -> str | None:
    """An error's `at` as UTC ISO 8601 (None when missing or unreadable)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return iso(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def job_detail(job: QueuedJob, view: View) -> dict[str, Any]:
    """A job in full: kwargs, meta, result, every error, limits, and its timeline."""
    detail = job_summary(job, view)
    errors = [
        {
            "attempt": int(e.get("attempt", 0)),
            "traceback": str(e.get("traceback", "")),
            "at": _error_time(e.get("at")),
        }
        for e in job.errors
        if isinstance(e, dict)
    ]
    detail.update(
        unique_key=job.unique_key,
        meta=job.meta,
        result=HIDDEN if view.hide_args else job.result,
        limits=[limit.serialize() for limit in job.limits],
        errors=errors,
        malformed=_sql.malformed_reason(job),
        timeline=_timeline(job, errors),
    )
    return detail


def _timeline(job: QueuedJob, errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What happened to the job, in order: pushed, each failed attempt, the last attempt's
    start, its end (errors stored before their time was kept have none)."""
    events: list[dict[str, Any]] = [
        {
            "at": iso(pushed_at(job.id)),
            "event": "pushed",
            "attempt": None,
            "detail": f"to {job.queue}",
        }
    ]
    events.extend(
        {
            "at": e["at"],
            "event": "attempt failed",
            "attempt": e["attempt"],
            "detail": _last_line(e["traceback"]),
        }
        for e in errors
    )
    if job.started_at is not None:
        events.append(
            {
                "at": iso(job.started_at),
                "event": "attempt started",
                "attempt": job.attempts,
                "detail": None,
            }
        )
    if job.completed_at is not None:
        events.append(
            {
                "at": iso(job.completed_at),
                "event": job.state.value,
                "attempt": job.attempts,
                "detail": None,
            }
        )
    elif job.state.value in ("pending", "retrying") and job.scheduled_at is not None:
        events.append(
            {"at": iso(job.scheduled_at), "event": "due", "attempt": None, "detail": None}
        )
    # In time order (stable); an error stored without its time goes right after "pushed".
    pushed = events[0]["at"]
    return sorted(events, key=lambda e: e["at"] or pushed)


def queue_row(stats: QueueStats | None, queue: Queue | None, name: str) -> dict[str, Any]:
    """A queue's settings (declared queues) and figures together."""
    row: dict[str, Any] = {
        "name": name,
        "declared": queue is not None,
        "state": queue.state.value if queue is not None else None,
        "resume_at": iso(queue.resume_at) if queue is not None else None,
        "concurrency": queue.concurrency if queue is not None else None,
        "executor": queue.executor if queue is not None else None,
        "executor_name": EXECUTORS.get(queue.executor, queue.executor) if queue else None,
        "tags": sorted(queue.tags) if queue is not None else [],
        "polling_interval": queue.polling_interval if queue is not None else None,
        "rate_limit": queue.rate_limit if queue is not None else None,
        "rate_limit_window": queue.rate_limit_window if queue is not None else None,
        "pending": 0,
        "retrying": 0,
        "running": 0,
        "oldest_runnable_age": None,
        "succeeded_last_minute": 0,
        "failed_last_minute": 0,
        "succeeded_last_hour": 0,
        "failed_last_hour": 0,
        "workers": [],
    }
    if stats is not None:
        row.update(
            pending=stats.pending,
            retrying=stats.retrying,
            running=stats.running,
            oldest_runnable_age=stats.oldest_runnable_age,
            succeeded_last_minute=stats.succeeded_last_minute,
            failed_last_minute=stats.failed_last_minute,
            succeeded_last_hour=stats.succeeded_last_hour,
            failed_last_hour=stats.failed_last_hour,
            workers=list(stats.workers),
        )
    return row


async def queues(chancy: Chancy) -> list[dict[str, Any]]:
    """Every queue: declared, or holding unfinished or recently finished jobs."""
    declared = {q.name: q for q in await chancy.get_all_queues()}
    stats = {s.name: s for s in await chancy.queue_stats()}
    return [queue_row(stats.get(n), declared.get(n), n) for n in sorted({*declared, *stats})]


async def queue(chancy: Chancy, name: str) -> dict[str, Any] | None:
    """One queue (None: neither declared nor holding jobs)."""
    declared = {q.name: q for q in await chancy.get_all_queues()}
    found = await chancy.queue_stats(name)
    stats = found[0] if found else None
    if stats is None and name not in declared:
        return None
    return queue_row(stats, declared.get(name), name)


async def _has_table(chancy: Chancy, name: str) -> bool:
    async with chancy.db.connection() as conn:
        row = await conn.fetchone("SELECT to_regclass(%s) IS NOT NULL", (chancy.prefix + name,))
    return bool(row and row[0])


def _filter_params(filters: dict[str, Any]) -> dict[str, Any]:
    return {
        k: filters[k] for k in ("queue", "state", "func", "since", "until", "error") if k in filters
    }


def job_filter(filters: dict[str, Any]) -> JobFilter:
    """The operator API's filter of the API's filter fields (`ValueError` when malformed)."""
    return JobFilter(**_filter_params(filters))


async def jobs(
    chancy: Chancy, filters: dict[str, Any], *, limit: int, after: str | None, view: View
) -> dict[str, Any]:
    """A page of jobs, newest first, and the id to pass as `after` for the next (or None)."""
    found = await chancy.list_jobs(**_filter_params(filters), limit=limit + 1, after=after)
    more = len(found) > limit
    page = found[:limit]
    return {
        "jobs": [job_summary(j, view) for j in page],
        "next": page[-1].id if more and page else None,
    }


async def job(chancy: Chancy, job_id: str, view: View) -> dict[str, Any] | None:
    found = await chancy.get_job(job_id)
    return job_detail(found, view) if found is not None else None


async def recent_failures(
    chancy: Chancy, names: list[str], view: View, limit: int = 10
) -> list[dict[str, Any]]:
    if not names:
        return []
    async with chancy.db.connection() as conn:
        rows = await conn.fetchall(
            _sql.recent_failures_query(chancy.tables), {"queues": names, "limit": limit}
        )
    return [job_summary(_sql.read_job(row), view) for row in rows]


async def workers(chancy: Chancy) -> list[dict[str, Any]]:
    """Every worker row: alive (heartbeat not expired) or dead (expired, not yet removed), its
    tags and queues, the jobs it runs, its process-executor children, and whether it leads."""
    rows = await chancy.get_all_workers()
    leader = await current_leader(chancy)
    async with chancy.db.connection() as conn:
        now_row = await conn.fetchone("SELECT now()")
        running = await conn.fetchall(_sql.running_jobs_query(chancy.tables), {"limit": 1000})
    now: datetime = now_row[0] if now_row else datetime.now(UTC)
    by_holder: dict[str, list[dict[str, Any]]] = {}
    for taken_by, job_id, queue_name, func, started_at, attempts in running:
        by_holder.setdefault(str(taken_by), []).append(
            {
                "id": job_id,
                "queue": queue_name,
                "func": func,
                "started_at": iso(started_at),
                "attempt": attempts,
            }
        )
    answer = []
    for w in rows:
        status = w.get("queue_status") or {}
        children = [
            {
                "queue": queue_name,
                "pid": child.get("pid"),
                "rss": child.get("rss"),
                "jobs_run": child.get("jobs_run"),
                "job": child.get("job"),
            }
            for queue_name, info in sorted(status.items())
            for child in (info or {}).get("children") or []
        ]
        answer.append(
            {
                "worker_id": w["worker_id"],
                "hostname": w["hostname"],
                "pid": w["pid"],
                "alive": w["expires_at"] > now,
                "leader": bool(
                    leader
                    and leader["worker_id"] == w["worker_id"]
                    and leader["incarnation"] == w["incarnation"]
                ),
                "tags": sorted(w["tags"] or []),
                "queues": sorted(w["queues"] or []),
                "queue_status": {
                    name: {k: v for k, v in (info or {}).items() if k != "children"}
                    for name, info in sorted(status.items())
                },
                "started_at": iso(w["started_at"]),
                "last_seen": iso(w["last_seen"]),
                "expires_at": iso(w["expires_at"]),
                "running": by_holder.get(f"{w['worker_id']}:{w['incarnation']}", []),
                "children": children,
            }
        )
    return answer


async def schedules(chancy: Chancy, view: View) -> dict[str, Any]:
    """The cron schedules (`installed` is false without the Cron plugin's table)."""
    if not await _has_table(chancy, "cron_schedules"):
        return {"installed": False, "schedules": []}
    from chancy.plugins.cron import get_schedules

    found = await get_schedules(chancy)
    return {
        "installed": True,
        "schedules": [
            {
                "name": s.name,
                "cron": s.cron,
                "timezone": s.timezone,
                "func": s.job.func,
                "queue": s.job.queue,
                "kwargs": HIDDEN if view.hide_args else s.job.kwargs,
                "next_run": iso(s.next_run),
                "last_run": iso(s.last_run),
            }
            for s in found
        ],
    }


async def metrics(
    chancy: Chancy, *, queue: str | None, since: datetime | timedelta, resolution: int
) -> dict[str, Any]:
    """The Metrics plugin's points (`installed` is false without its table)."""
    if not await _has_table(chancy, "metric_points"):
        return {"installed": False, "resolution": resolution, "points": []}
    try:
        points = await chancy.metrics(queue=queue, since=since, resolution=resolution)
    except psycopg.errors.UndefinedTable:  # dropped meanwhile
        return {"installed": False, "resolution": resolution, "points": []}
    return {
        "installed": True,
        "resolution": resolution,
        "points": [
            {
                "queue": p.queue,
                "bucket": iso(p.bucket),
                "succeeded": p.succeeded,
                "failed": p.failed,
                "retried": p.retried,
                "run_p50": p.run_p50,
                "run_p95": p.run_p95,
                "wait_p50": p.wait_p50,
                "wait_p95": p.wait_p95,
                "depth": p.depth,
            }
            for p in points
        ],
    }


def series(points: list[dict[str, Any]], *, resolution: int, since: datetime) -> dict[str, Any]:
    """Points of several queues summed per bucket, with every bucket from `since` to now
    present (an empty one is zero): what a chart draws."""
    step = resolution
    start = int(since.timestamp()) // step * step
    end = int(datetime.now(UTC).timestamp()) // step * step
    buckets: dict[int, dict[str, Any]] = {
        t: {"succeeded": 0, "failed": 0, "depth": 0, "run_p95": None}
        for t in range(start, end + 1, step)
    }
    for p in points:
        t = int(datetime.fromisoformat(p["bucket"]).timestamp())
        b = buckets.get(t)
        if b is None:
            continue
        b["succeeded"] += p["succeeded"]
        b["failed"] += p["failed"]
        b["depth"] += p["depth"]
        if p["run_p95"] is not None:
            b["run_p95"] = max(b["run_p95"] or 0.0, p["run_p95"])
    return {
        "times": [datetime.fromtimestamp(t, UTC) for t in buckets],
        "succeeded": [b["succeeded"] for b in buckets.values()],
        "failed": [b["failed"] for b in buckets.values()],
        "depth": [b["depth"] for b in buckets.values()],
        "run_p95": [b["run_p95"] for b in buckets.values()],
    }


async def overview(chancy: Chancy, view: View) -> dict[str, Any]:
    """Every queue's figures, the workers, the leader and the recent failures."""
    queue_rows = await queues(chancy)
    worker_rows = await workers(chancy)
    failures = await recent_failures(chancy, [q["name"] for q in queue_rows], view)
    totals = {
        key: sum(q[key] for q in queue_rows)
        for key in (
            "pending",
            "retrying",
            "running",
            "succeeded_last_minute",
            "failed_last_minute",
            "succeeded_last_hour",
            "failed_last_hour",
        )
    }
    ages = [q["oldest_runnable_age"] for q in queue_rows if q["oldest_runnable_age"] is not None]
    totals["oldest_runnable_age"] = max(ages) if ages else None
    totals["workers_alive"] = sum(1 for w in worker_rows if w["alive"])
    return {
        "queues": queue_rows,
        "workers": worker_rows,
        "failures": failures,
        "totals": totals,
    }
