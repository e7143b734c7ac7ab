"""Named SQL: every table name carries the app's prefix and is composed with `sql.Identifier`."""

from __future__ import annotations

import json
import re
from typing import Any

from psycopg import sql

from chancy.job import Limit, QueuedJob

_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")

#: Job states from which a job can still run.
RUNNABLE = ("pending", "retrying")
#: Job states that are not finished (a unique_key is held by at most one such job).
UNFINISHED = ("pending", "running", "retrying")

JOB_COLUMNS = (
    "id",
    "queue",
    "func",
    "kwargs",
    "priority",
    "max_attempts",
    "scheduled_at",
    "limits",
    "unique_key",
    "meta",
    "started_at",
    "completed_at",
    "attempts",
    "state",
    "errors",
    "result",
)
#: What a claim returns: a job being claimed has no result yet.
CLAIM_COLUMNS = JOB_COLUMNS[:-1]


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ValueError(
            f"prefix: {prefix!r} must be 1-40 characters of lowercase letters, digits and '_', "
            "not starting with a digit"
        )
    return prefix


class Tables:
    """Identifiers of one app's tables, indexes and notification channel."""

    def __init__(self, prefix: str) -> None:
        self.prefix = check_prefix(prefix)
        self.channel = f"{prefix}events"

    def __call__(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.prefix + name)

    @property
    def jobs(self) -> sql.Identifier:
        return self("jobs")

    @property
    def queues(self) -> sql.Identifier:
        return self("queues")

    @property
    def workers(self) -> sql.Identifier:
        return self("workers")

    @property
    def leader(self) -> sql.Identifier:
        return self("leader")

    @property
    def rate_limits(self) -> sql.Identifier:
        return self("rate_limits")

    @property
    def schema_versions(self) -> sql.Identifier:
        return self("schema_versions")

    def q(self, template: str, **extra: sql.Composable) -> sql.Composed:
        """Format `template`, whose `{jobs}`-style fields name tables of this app."""
        names = {
            "jobs": self.jobs,
            "queues": self.queues,
            "workers": self.workers,
            "leader": self.leader,
            "rate_limits": self.rate_limits,
            "schema_versions": self.schema_versions,
            "job_columns": sql.SQL(", ").join(map(sql.Identifier, JOB_COLUMNS)),
        }
        return sql.SQL(template).format(**{**names, **extra})


def job_from_row(row: tuple) -> QueuedJob:
    """A `QueuedJob` from a row selected with `JOB_COLUMNS`."""
    (
        id_,
        queue,
        func,
        kwargs,
        priority,
        max_attempts,
        scheduled_at,
        limits,
        unique_key,
        meta,
        started_at,
        completed_at,
        attempts,
        state,
        errors,
        result,
    ) = row
    return QueuedJob(
        id=str(id_),
        queue=queue,
        func=func,
        kwargs=kwargs if kwargs is not None else {},
        priority=priority,
        max_attempts=max_attempts,
        scheduled_at=scheduled_at,
        limits=[Limit.deserialize(item) for item in limits or []],
        unique_key=unique_key,
        meta=meta or {},
        started_at=started_at,
        completed_at=completed_at,
        attempts=attempts,
        state=QueuedJob.State(state),
        errors=list(errors or []),
        result=result,
    )


def event(kind: str, **fields: Any) -> str:
    """A notification payload: compact JSON with the event kind under `t`."""
    return json.dumps({"t": kind, **fields}, separators=(",", ":"))


# -- the worker's statements ---------------------------------------------------------------

#: Finished job ids per `job.done` notice (each id is about 40 bytes of the 8000-byte payload).
DONE_IDS_PER_NOTICE = 150


def release_running_query(tables: Tables) -> sql.Composed:
    """Put every job %(taken_by)s still holds back to pending, not counting the attempt."""
    return tables.q(
        """
        UPDATE {jobs} SET state = 'pending', attempts = attempts - 1, started_at = NULL,
            taken_by = NULL
        WHERE state = 'running' AND taken_by = %(taken_by)s
        RETURNING id
        """
    )


def cancel_requested_query(tables: Tables) -> sql.Composed:
    """Ids of jobs %(taken_by)s runs whose cancellation was asked for."""
    return tables.q(
        "SELECT id::text FROM {jobs}"
        " WHERE state = 'running' AND taken_by = %(taken_by)s AND cancel_requested"
    )


def announce_worker_query(tables: Tables) -> sql.Composed:
    """Insert or refresh this worker's row; returns whether it was new (inserted)."""
    return tables.q(
        """
        INSERT INTO {workers} (worker_id, incarnation, hostname, pid, tags, queues, queue_status,
                               started_at, last_seen, expires_at)
        VALUES (%(worker_id)s, %(incarnation)s, %(hostname)s, %(pid)s, %(tags)s, %(queues)s,
                %(queue_status)s::jsonb, now(), now(),
                now() + make_interval(secs => %(timeout)s))
        ON CONFLICT (worker_id) DO UPDATE SET
            incarnation = EXCLUDED.incarnation, hostname = EXCLUDED.hostname,
            pid = EXCLUDED.pid, tags = EXCLUDED.tags, queues = EXCLUDED.queues,
            queue_status = EXCLUDED.queue_status,
            started_at = CASE WHEN {workers}.incarnation = EXCLUDED.incarnation
                              THEN {workers}.started_at ELSE now() END,
            last_seen = now(), expires_at = EXCLUDED.expires_at
        RETURNING (xmax = 0)
        """
    )


def expire_workers_query(tables: Tables) -> sql.Composed:
    """Remove workers whose heartbeat expired; returns their ids."""
    return tables.q("DELETE FROM {workers} WHERE expires_at < now() RETURNING worker_id")


def remove_worker_query(tables: Tables) -> sql.Composed:
    """Remove this worker's row on a clean exit (only this incarnation's)."""
    return tables.q(
        "DELETE FROM {workers} WHERE worker_id = %(worker_id)s AND incarnation = %(incarnation)s"
    )


def rate_limit_window_query(tables: Tables) -> sql.Composed:
    """Lock %(queue)s's fixed rate-limit window (starting a new one when the current one ended)
    and return how many jobs it has used; run inside the transaction that claims."""
    return tables.q(
        """
        INSERT INTO {rate_limits} AS r (queue, window_start, used)
        VALUES (%(queue)s,
                to_timestamp(floor(extract(epoch FROM now()) / %(window)s) * %(window)s), 0)
        ON CONFLICT (queue) DO UPDATE SET
            used = CASE WHEN r.window_start = EXCLUDED.window_start THEN r.used ELSE 0 END,
            window_start = EXCLUDED.window_start
        RETURNING used
        """
    )


def rate_limit_use_query(tables: Tables) -> sql.Composed:
    """Count %(claimed)s more jobs against %(queue)s's current window."""
    return tables.q("UPDATE {rate_limits} SET used = used + %(claimed)s WHERE queue = %(queue)s")


def update_jobs_query(tables: Tables) -> sql.Composed:
    """Write a batch of job updates in one statement and notify the finished ones.

    Parameters: the batch as one JSON array of objects (id, state, scheduled_at, completed_at,
    meta, errors, result, attempts: the attempt each update belongs to), then `taken_by` and
    the channel. Each row is written only while the job is still running, held by this worker,
    in that attempt; so a late write from a worker presumed dead changes nothing. A 'pending'
    update puts a job back without counting the attempt (and a failed attempt stores no
    result). A last boolean parameter says whether to send the `job.done` notices. Returns
    (rows written, notices sent).
    """
    return tables.q(
        """
        WITH u AS (
            SELECT * FROM json_to_recordset(%s::json) AS u(
                id uuid, state text, scheduled_at timestamptz, completed_at timestamptz,
                meta jsonb, errors jsonb, result jsonb, attempts integer)
        ), upd AS (
            UPDATE {jobs} AS j SET
                state = u.state,
                scheduled_at = u.scheduled_at,
                completed_at = u.completed_at,
                meta = u.meta,
                errors = u.errors,
                result = u.result,
                attempts = CASE WHEN u.state = 'pending' THEN j.attempts - 1 ELSE j.attempts END,
                started_at = CASE WHEN u.state = 'pending' THEN NULL ELSE j.started_at END,
                taken_by = NULL
            FROM u
            -- The guard is one join condition wrapped in IS TRUE, so the planner can neither
            -- drive the join from the (taken_by) WHERE state = 'running' index nor, on a table
            -- without statistics yet, estimate it at one row and rescan the batch per row
            -- (quadratic); `id = ANY(...)` makes it probe the primary key once per update.
            WHERE j.id = u.id AND j.id = ANY(ARRAY(SELECT id FROM u))
              AND (j.attempts = u.attempts AND j.state = 'running' AND j.taken_by = %s) IS TRUE
            RETURNING j.id, j.state
        ), done AS (
            SELECT id, row_number() OVER () - 1 AS n FROM upd
            WHERE state IN ('succeeded', 'failed')
        ), notice AS (
            SELECT pg_notify(%s, json_build_object('t', 'job.done', 'ids', array_agg(id))::text)
            FROM done WHERE %s GROUP BY n / {per}
        )
        SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM notice)
        """,
        per=sql.Literal(DONE_IDS_PER_NOTICE),
    )


def claim_query(tables: Tables) -> sql.Composed:
    """Claim up to %(up_to)s runnable jobs of %(queue)s for %(taken_by)s, in one statement.

    Highest priority first, then push order (ids are time-ordered); only jobs whose
    `scheduled_at` has come; rows locked by another claimer are skipped. The attempt is
    counted here, so a job that keeps killing its process runs out of attempts. The id and
    the jsonb columns come back as text, so the worker can skip parsing the (usually empty)
    ones; rows suit `chancy.worker`'s fast row reader.
    """
    text_columns = {"id", "kwargs", "limits", "meta", "errors"}
    return tables.q(
        """
        WITH picked AS (
            SELECT id FROM {jobs}
            WHERE queue = %(queue)s AND state IN ('pending', 'retrying')
              AND scheduled_at <= now()
            ORDER BY priority DESC, id
            LIMIT %(up_to)s
            FOR UPDATE SKIP LOCKED
        )
        UPDATE {jobs} AS j
        SET state = 'running', started_at = now(), attempts = j.attempts + 1,
            taken_by = %(taken_by)s
        FROM picked WHERE j.id = picked.id
        RETURNING {returning}
        """,
        returning=sql.SQL(", ").join(
            sql.SQL("j.{}::text" if c in text_columns else "j.{}").format(sql.Identifier(c))
            for c in CLAIM_COLUMNS
        ),
    )
