"""Direct database set-ups for the plugin tests (workers, jobs in given states)."""

from __future__ import annotations

from typing import Any

from chancy import Chancy, Job, Queue


async def add_worker(app: Chancy, worker_id: str, incarnation: str, *, alive: bool) -> None:
    """A worker row whose heartbeat is fresh (`alive`) or expired a minute ago."""
    expires = "now() + interval '1 minute'" if alive else "now() - interval '1 minute'"
    async with app.db.connection() as conn:
        await conn.execute(
            app.tables.q(
                "INSERT INTO {workers} (worker_id, incarnation, hostname, pid, expires_at,"
                " last_seen) VALUES (%s, %s, 'test', 1, " + expires + ", now())"
                " ON CONFLICT (worker_id) DO UPDATE SET incarnation = EXCLUDED.incarnation,"
                " expires_at = EXCLUDED.expires_at"
            ),
            (worker_id, incarnation),
        )


async def add_job(
    app: Chancy,
    *,
    state: str = "pending",
    taken_by: str | None = None,
    attempts: int = 0,
    max_attempts: int = 3,
    started_ago: float = 60,
    completed_ago: float | None = None,
    cancel_requested: bool = False,
    queue: str = "default",
) -> str:
    """Push a job, then force its row into the given state; returns its id."""
    try:
        await app.declare(Queue(queue))
    except Exception:  # already declared
        pass
    ref = await app.push(Job(func="pjobs.noop", queue=queue, max_attempts=max_attempts))
    async with app.db.connection() as conn:
        await conn.execute(
            app.tables.q(
                "UPDATE {jobs} SET state = %s, taken_by = %s, attempts = %s,"
                " started_at = now() - make_interval(secs => %s),"
                " completed_at = CASE WHEN %s::float8 IS NULL THEN NULL"
                "   ELSE now() - make_interval(secs => %s::float8) END,"
                " cancel_requested = %s WHERE id = %s"
            ),
            (
                state,
                taken_by,
                attempts,
                started_ago,
                completed_ago,
                completed_ago,
                cancel_requested,
                ref.identifier,
            ),
        )
    return ref.identifier


async def job_row(app: Chancy, job_id: str) -> dict[str, Any] | None:
    """The job's state, holder, attempts, errors and times as a dict (None if deleted)."""
    async with app.db.connection() as conn:
        row = await conn.fetchone(
            app.tables.q(
                "SELECT state, taken_by, attempts, errors, completed_at, scheduled_at"
                " FROM {jobs} WHERE id = %s"
            ),
            (job_id,),
        )
    if row is None:
        return None
    keys = ("state", "taken_by", "attempts", "errors", "completed_at", "scheduled_at")
    return dict(zip(keys, row, strict=True))


async def count_jobs(app: Chancy, where: str = "true", params: tuple = ()) -> int:
    async with app.db.connection() as conn:
        row = await conn.fetchone(
            app.tables.q("SELECT count(*) FROM {jobs} WHERE " + where), params
        )
    assert row is not None
    return int(row[0])
