"""Named SQL: every table name carries the app's prefix and is composed with `sql.Identifier`."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
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

#: Times travel to the server as integer microseconds since the epoch (`(t - EPOCH) //
#: MICROSECOND`): exact at any date, and a quarter of the cost of `isoformat()`.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def micros_to_timestamptz(expression: str) -> str:
    """SQL turning `expression` (a bigint of microseconds since the epoch) into a timestamptz,
    exactly: whole seconds through `to_timestamp`, the rest as an interval (a float of seconds
    would lose microseconds after 2106). `%` is doubled for psycopg's placeholders."""
    return (
        f"(to_timestamp(({expression} / 1000000)::float8)"
        f" + ({expression} %% 1000000) * interval '1 microsecond')"
    )


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


#: The columns `claim_query` and `list_jobs_query` return as text: the id and the jsonb ones,
#: so that reading a row can skip parsing the (usually empty) JSON documents.
TEXT_COLUMNS = frozenset({"id", "kwargs", "limits", "meta", "errors", "result"})
_STATES = {state.value: state for state in QueuedJob.State}


def text_job_columns(
    alias: str | None = None, columns: tuple[str, ...] = JOB_COLUMNS
) -> sql.Composed:
    """`JOB_COLUMNS`, those of `TEXT_COLUMNS` cast to text (read them with
    `job_from_text_row`)."""
    return sql.SQL(", ").join(
        sql.SQL("{}::text" if c in TEXT_COLUMNS else "{}").format(
            sql.Identifier(alias, c) if alias else sql.Identifier(c)
        )
        for c in columns
    )


def _json_text(text: str | None, empty: Any) -> Any:
    if text is None or text == "{}" or text == "[]":
        return type(empty)()
    return json.loads(text)


def job_from_text_row(row: tuple[Any, ...]) -> QueuedJob:
    """A `QueuedJob` from a row of `text_job_columns()`, built without re-validating what the
    database already holds (the worker's claim is its hottest path)."""
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
        *rest,  # `result`, except in a claim's rows (a job being claimed has none)
    ) = row
    kwargs = _json_text(kwargs, {})
    meta = _json_text(meta, {})
    if type(kwargs) is not dict or type(meta) is not dict:
        raise TypeError("kwargs and meta must be JSON objects")
    job = object.__new__(QueuedJob)
    job.__dict__.update(
        func=func,
        queue=queue,
        kwargs=kwargs,
        priority=priority,
        max_attempts=max_attempts,
        scheduled_at=scheduled_at,
        limits=[Limit.deserialize(item) for item in _json_text(limits, [])],
        unique_key=unique_key,
        meta=meta,
        id=id_,
        started_at=started_at,
        completed_at=completed_at,
        attempts=attempts,
        state=_STATES[state],
        errors=_json_text(errors, []),
        result=json.loads(rest[0]) if rest and rest[0] is not None else None,
    )
    return job


#: What a malformed row (written straight into the table) can raise while it is decoded.
_ROW_ERRORS = (ValueError, TypeError, KeyError, AttributeError, RecursionError)


def read_job(row: tuple[Any, ...]) -> QueuedJob:
    """`job_from_text_row`, except that a row which does not decode (written by hand: a limit
    of -1, kwargs nested too deep...) gives a stand-in naming the bad columns instead of
    raising: the worker fails it at once (one bad row never holds up its batch), and an
    operator can still read it."""
    try:
        return job_from_text_row(row)
    except _ROW_ERRORS:
        return malformed_job(dict(zip(JOB_COLUMNS, row, strict=False)))


def malformed_job(columns: dict[str, Any]) -> QueuedJob:
    """A stand-in for the job of a row of text columns that does not decode: its id, queue,
    func, counters and state as stored, no kwargs or limits, and ``malformed`` (read with
    `malformed_reason`) naming each bad column."""
    problems = []
    decoded: dict[str, Any] = {}
    for name, kind in (("kwargs", dict), ("limits", list), ("meta", dict), ("errors", list)):
        raw = columns.get(name)
        try:
            value = json.loads(raw) if isinstance(raw, str) else raw
            if value is not None and not isinstance(value, kind):
                raise TypeError(f"expected a JSON {'object' if kind is dict else 'array'}")
            if name == "limits":
                for item in value or ():
                    Limit.deserialize(item)
            decoded[name] = value
        except _ROW_ERRORS as exc:
            problems.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
    if not problems:
        problems.append("the row does not decode")

    def number(name: str, default: int) -> Any:
        value = columns.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    job = object.__new__(QueuedJob)
    job.__dict__.update(
        id=str(columns["id"]),
        queue=str(columns.get("queue")),
        func=str(columns.get("func")),
        kwargs={},
        priority=number("priority", 0),
        max_attempts=number("max_attempts", 1),
        scheduled_at=columns.get("scheduled_at"),
        limits=[],
        unique_key=columns.get("unique_key"),
        meta=decoded.get("meta") or {},
        started_at=columns.get("started_at"),
        completed_at=columns.get("completed_at"),
        attempts=number("attempts", 0),
        state=_STATES.get(str(columns.get("state")), QueuedJob.State.FAILED),
        errors=decoded.get("errors") or [],
        result=None,
        _malformed="malformed job row: " + "; ".join(problems),
    )
    return job


def malformed_reason(job: QueuedJob) -> str | None:
    """Why `job` is a stand-in for a row that does not decode (see `read_job`), or None."""
    reason: str | None = job.__dict__.get("_malformed")
    return reason


#: PostgreSQL refuses a NOTIFY payload of 8000 bytes or more, and aborts the transaction.
MAX_NOTICE_BYTES = 7999


def event(kind: str, **fields: Any) -> str:
    """A notification payload: compact JSON with the event kind under `t`, always short enough.

    A payload over `MAX_NOTICE_BYTES` (a push spanning many long-named queues, a plugin's big
    payload) is replaced so that the NOTIFY can never abort the transaction carrying it: a
    "pushed" notice by one that wakes every queue (``q: null``), any other by ``{"t": kind,
    "overflow": true}`` (listeners then look for themselves, e.g. `wait_for_job` polls).
    """
    text = json.dumps({"t": kind, **fields}, separators=(",", ":"), default=str)
    if len(text) * 4 <= MAX_NOTICE_BYTES or len(text.encode()) <= MAX_NOTICE_BYTES:
        return text
    if kind == "pushed":
        return json.dumps({"t": kind, "q": None}, separators=(",", ":"))
    return json.dumps({"t": kind, "overflow": True}, separators=(",", ":"))


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

    Parameters: the batch as one JSON array of arrays (id, state, scheduled_at and completed_at
    in microseconds since the epoch, meta, errors, attempts: the attempt each update belongs
    to, result: JSON null writes NULL), then `taken_by` and
    the channel. Each row is written only while the job is still running, held by this worker,
    in that attempt; so a late write from a worker presumed dead changes nothing. A 'pending'
    update puts a job back without counting the attempt (and a failed attempt stores no
    result). A last boolean parameter says whether to send the `job.done` notices. Returns
    (rows written, notices sent).
    """
    return tables.q(
        """
        WITH u AS (
            SELECT (r->>0)::uuid AS id, r->>1 AS state,
                   """
        + micros_to_timestamptz("(r->>2)::bigint")
        + """ AS scheduled_at,
                   """
        + micros_to_timestamptz("(r->>3)::bigint")
        + """ AS completed_at,
                   r->4 AS meta, r->5 AS errors, (r->>6)::integer AS attempts,
                   NULLIF(r->7, 'null'::jsonb) AS result
            FROM jsonb_array_elements(%s::jsonb) AS r
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

    Highest priority first, then the time a job became due (`scheduled_at`), then push order
    (ids are time-ordered); only jobs whose `scheduled_at` has come; rows locked by another
    claimer are skipped. The levels of priority present are found one index probe each (a
    loose index scan), and each level is read from its first due job, so jobs scheduled for
    later are never scanned, however many sit at a higher priority. The attempt is
    counted here, so a job that keeps killing its process runs out of attempts. The id and
    the jsonb columns come back as text, so the worker can skip parsing the (usually empty)
    ones; rows suit `chancy.worker`'s fast row reader.
    """
    return tables.q(
        """
        WITH RECURSIVE levels(priority) AS (
            (SELECT priority FROM {jobs}
             WHERE queue = %(queue)s AND state IN ('pending', 'retrying')
             ORDER BY priority DESC LIMIT 1)
            UNION ALL
            SELECT (SELECT n.priority FROM {jobs} n
                    WHERE n.queue = %(queue)s AND n.state IN ('pending', 'retrying')
                      AND n.priority < l.priority
                    ORDER BY n.priority DESC LIMIT 1)
            FROM levels l WHERE l.priority IS NOT NULL
        ), picked AS (
            SELECT due.id FROM levels l CROSS JOIN LATERAL (
                SELECT d.id FROM {jobs} d
                WHERE d.queue = %(queue)s AND d.state IN ('pending', 'retrying')
                  AND d.priority = l.priority AND d.scheduled_at <= now()
                ORDER BY d.scheduled_at, d.id
                LIMIT %(up_to)s
                FOR UPDATE SKIP LOCKED
            ) due
            WHERE l.priority IS NOT NULL
            LIMIT %(up_to)s
        )
        UPDATE {jobs} AS j
        SET state = 'running', started_at = now(), attempts = j.attempts + 1,
            taken_by = %(taken_by)s
        FROM picked WHERE j.id = picked.id
        RETURNING {returning}
        """,
        returning=text_job_columns("j", CLAIM_COLUMNS),
    )


# -- the operator's statements ---------------------------------------------------------------

#: The queue columns as read: a paused queue whose `resume_at` has passed reads as active (so
#: every worker resumes it on time without anyone writing), and `resume_at` reads as NULL
#: unless a resume is still to come.
QUEUE_SELECT = (
    "name, concurrency, tags,"
    " CASE WHEN state = 'paused' AND resume_at <= now() THEN 'active' ELSE state END,"
    " executor, executor_options, polling_interval, rate_limit, rate_limit_window,"
    " CASE WHEN state = 'paused' AND resume_at > now() THEN resume_at END"
)


#: The notices of an operator's statement (when %(notify)s): one "pushed" per distinct queue
#: the acted-on jobs are now in (its workers look for jobs at once), and one "job.cancelled"
#: per running job acted on (deleted: its worker stops it).
_OPERATOR_NOTICES = """
    SELECT pg_notify(%(channel)s, json_build_object('t', 'pushed', 'q',
        json_build_array(queue))::text)
    FROM (SELECT DISTINCT queue FROM acted WHERE queue IS NOT NULL) s WHERE %(notify)s
    UNION ALL
    SELECT pg_notify(%(channel)s, json_build_object('t', 'job.cancelled', 'id', t.id)::text)
    FROM acted a JOIN target t ON t.id = a.id WHERE t.state = 'running' AND %(notify)s
"""


def jobs_where(
    *,
    ids: bool = False,
    queue: bool = False,
    state: bool = False,
    func: bool = False,
    since: bool = False,
    until: bool = False,
    after: bool = False,
    error: bool = False,
) -> sql.Composable:
    """The WHERE condition of the operator's job statements: each named part compares a column
    with the bound parameter of the same name (`%(queue)s`, ...); `since`, `until` and `after`
    bound the time-ordered id; `error` is text one of the job's errors contains (any case).
    No part: every job."""
    parts = []
    if ids:
        parts.append("id = ANY(%(ids)s::uuid[])")
    if queue:
        parts.append("queue = %(queue)s")
    if state:
        parts.append("state = %(state)s")
    if func:
        parts.append("func = %(func)s")
    if since:
        parts.append("id >= %(since)s::uuid")
    if until:
        parts.append("id < %(until)s::uuid")
    if after:
        parts.append("id < %(after)s::uuid")
    if error:
        # strpos, not LIKE: the text is matched as given (no wildcards to escape). Only jobs
        # with errors are decoded (`errors <> '[]'` is cheap next to the text search).
        parts.append(
            "errors <> '[]'::jsonb AND strpos(lower(errors::text), lower(%(error)s::text)) > 0"
        )
    return sql.SQL(" AND ".join(parts) if parts else "true")


def list_jobs_query(tables: Tables, where: sql.Composable) -> sql.Composed:
    """The newest jobs matching `where` first, at most %(limit)s (read the rows with
    `job_from_text_row`)."""
    return tables.q(
        # `j.id`: a bare `id` would name the output column (the id as text), not the index's.
        "SELECT {columns} FROM {jobs} AS j WHERE {where} ORDER BY j.id DESC LIMIT %(limit)s",
        columns=text_job_columns(),
        where=where,
    )


def _targeted(tables: Tables, where: sql.Composable, action: str) -> sql.Composed:
    # One statement: lock the targets, act on those `action` accepts, notify, and report every
    # target with whether it was done (the `notice` row only forces the notices to be sent).
    return tables.q(
        """
        WITH target AS (
            SELECT id, queue, state, unique_key FROM {jobs} WHERE {where} FOR UPDATE
        ), acted AS ("""
        + action
        + """
        ), notice AS ("""
        + _OPERATOR_NOTICES
        + """)
        SELECT t.id::text, t.state, a.id IS NOT NULL FROM target t LEFT JOIN acted a ON a.id = t.id
        UNION ALL SELECT NULL, NULL, NULL FROM notice
        """,
        where=where,
    )


def retry_jobs_query(tables: Tables, where: sql.Composable) -> sql.Composed:
    """Make the finished targets pending now with no attempts counted (errors kept).

    A job whose `unique_key` an unfinished job holds is left alone (the key admits one
    unfinished job), and of several finished targets sharing a key only the newest runs again.
    """
    return _targeted(
        tables,
        where,
        """
            UPDATE {jobs} AS j SET state = 'pending', attempts = 0, scheduled_at = now(),
                started_at = NULL, completed_at = NULL, taken_by = NULL,
                cancel_requested = false
            FROM (
                SELECT DISTINCT ON (COALESCE(t.unique_key, t.id::text)) t.id FROM target t
                WHERE t.state IN ('succeeded', 'failed')
                  AND (t.unique_key IS NULL OR NOT EXISTS (
                      SELECT 1 FROM {jobs} u WHERE u.unique_key = t.unique_key
                        AND u.state IN ('pending', 'running', 'retrying')))
                ORDER BY COALESCE(t.unique_key, t.id::text), t.id DESC
            ) e
            WHERE j.id = e.id
            RETURNING j.id, j.queue
        """,
    )


def purge_jobs_query(tables: Tables, where: sql.Composable) -> sql.Composed:
    """Delete the targets (running ones only when %(include_running)s)."""
    return _targeted(
        tables,
        where,
        """
            DELETE FROM {jobs} AS j USING target t
            WHERE j.id = t.id AND (t.state <> 'running' OR %(include_running)s)
            RETURNING j.id, NULL::text AS queue
        """,
    )


def move_jobs_query(tables: Tables, where: sql.Composable) -> sql.Composed:
    """Move the targets that are not running to %(to_queue)s."""
    return _targeted(
        tables,
        where,
        """
            UPDATE {jobs} AS j SET queue = %(to_queue)s
            FROM target t WHERE j.id = t.id AND t.state <> 'running'
            RETURNING j.id, j.queue
        """,
    )


def reprioritize_jobs_query(tables: Tables, where: sql.Composable) -> sql.Composed:
    """Give the targets that are not running the priority %(priority)s."""
    return _targeted(
        tables,
        where,
        """
            UPDATE {jobs} AS j SET priority = %(priority)s
            FROM target t WHERE j.id = t.id AND t.state <> 'running'
            RETURNING j.id, j.queue
        """,
    )


def queue_exists_query(tables: Tables) -> sql.Composed:
    return tables.q("SELECT 1 FROM {queues} WHERE name = %(to_queue)s")


def pause_queue_query(tables: Tables) -> sql.Composed:
    """Pause %(name)s until %(resume_at)s (a timestamptz, NULL for good) or for %(resume_in)s
    (an interval); returns the queue as read."""
    return tables.q(
        "UPDATE {queues} SET state = 'paused', updated_at = now(),"
        " resume_at = COALESCE(%(resume_at)s::timestamptz, now() + %(resume_in)s::interval)"
        " WHERE name = %(name)s RETURNING " + QUEUE_SELECT
    )


def resume_queue_query(tables: Tables) -> sql.Composed:
    return tables.q(
        "UPDATE {queues} SET state = 'active', resume_at = NULL, updated_at = now()"
        " WHERE name = %(name)s RETURNING " + QUEUE_SELECT
    )


def queue_stats_query(tables: Tables, one: bool) -> sql.Composed:
    """Per queue (declared, or holding jobs; only %(name)s when `one`): counts of unfinished
    jobs by state, the oldest runnable job's wait in seconds, jobs finished in the last minute
    and hour, and the live workers that run it. Reads only the partial indexes of unfinished
    jobs and the last hour of the finished-jobs index."""
    only = " AND queue = %(name)s" if one else ""
    return tables.q(
        """
        WITH live AS (
            -- One scan per partial index: a single IN list over the runnable and running
            -- states would read the whole table. No FILTER on the oldest: the earliest
            -- scheduled_at is due exactly when some job is.
            SELECT queue,
                count(*) FILTER (WHERE state = 'pending') AS pending,
                count(*) FILTER (WHERE state = 'retrying') AS retrying,
                min(scheduled_at) AS first_at
            FROM {jobs} WHERE state IN ('pending', 'retrying')"""
        + only
        + """
            GROUP BY queue
        ), busy AS (
            SELECT queue, count(*) AS running FROM {jobs} WHERE state = 'running'"""
        + only
        + """
            GROUP BY queue
        ), done AS (
            SELECT queue,
                count(*) FILTER (WHERE state = 'succeeded'
                                 AND completed_at > now() - interval '1 minute') AS s_min,
                count(*) FILTER (WHERE state = 'failed'
                                 AND completed_at > now() - interval '1 minute') AS f_min,
                count(*) FILTER (WHERE state = 'succeeded') AS s_hour,
                count(*) FILTER (WHERE state = 'failed') AS f_hour
            FROM {jobs}
            WHERE state IN ('succeeded', 'failed') AND completed_at > now() - interval '1 hour'"""
        + only
        + """
            GROUP BY queue
        ), served AS (
            SELECT q AS queue, array_agg(worker_id ORDER BY worker_id) AS workers
            FROM {workers}, unnest(queues) AS q WHERE expires_at > now() GROUP BY q
        ), names AS (
            SELECT name FROM {queues} WHERE true"""
        + (" AND name = %(name)s" if one else "")
        + """
            UNION SELECT queue FROM live UNION SELECT queue FROM busy
            UNION SELECT queue FROM done
        )
        SELECT n.name, q.name IS NOT NULL,
            CASE WHEN q.state = 'paused' AND q.resume_at <= now() THEN 'active' ELSE q.state END,
            CASE WHEN q.state = 'paused' AND q.resume_at > now() THEN q.resume_at END,
            COALESCE(l.pending, 0), COALESCE(l.retrying, 0), COALESCE(b.running, 0),
            CASE WHEN l.first_at <= now() THEN extract(epoch FROM now() - l.first_at) END,
            COALESCE(d.s_min, 0), COALESCE(d.f_min, 0), COALESCE(d.s_hour, 0),
            COALESCE(d.f_hour, 0), COALESCE(w.workers, '{{}}')
        FROM names n
        LEFT JOIN {queues} q ON q.name = n.name
        LEFT JOIN live l ON l.queue = n.name
        LEFT JOIN busy b ON b.queue = n.name
        LEFT JOIN done d ON d.queue = n.name
        LEFT JOIN served w ON w.queue = n.name
        ORDER BY n.name
        """
    )


# -- the dashboard's statements ------------------------------------------------------------


def recent_failures_query(tables: Tables) -> sql.Composed:
    """The newest %(limit)s failed jobs (by push time) of the queues %(queues)s: one probe of
    the finished-jobs list index per queue, so its cost does not grow with the history, even
    when no job has failed for a long time."""
    return tables.q(
        """
        SELECT {columns} FROM unnest(%(queues)s::text[]) AS q(name)
        CROSS JOIN LATERAL (
            SELECT * FROM {jobs} j WHERE j.queue = q.name AND j.state = 'failed'
            ORDER BY j.id DESC LIMIT %(limit)s
        ) f
        ORDER BY f.id DESC LIMIT %(limit)s
        """,
        columns=text_job_columns("f"),
    )


def running_jobs_query(tables: Tables) -> sql.Composed:
    """Up to %(limit)s running jobs (from the running-jobs index): who holds each, its queue,
    function and start."""
    return tables.q(
        "SELECT taken_by, id::text, queue, func, started_at, attempts FROM {jobs}"
        " WHERE state = 'running' ORDER BY started_at LIMIT %(limit)s"
    )
