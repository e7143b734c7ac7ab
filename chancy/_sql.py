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
    )


def event(kind: str, **fields: Any) -> str:
    """A notification payload: compact JSON with the event kind under `t`."""
    return json.dumps({"t": kind, **fields}, separators=(",", ":"))


#: PostgreSQL caps a NOTIFY payload at 8000 bytes; ids are split across notices below this.
MAX_PAYLOAD = 7000


def chunked_ids(ids: list[str]) -> list[list[str]]:
    per = max(1, MAX_PAYLOAD // 40)
    return [ids[i : i + per] for i in range(0, len(ids), per)]


def fetch_query(tables: Tables) -> sql.Composed:
    """Claim up to %(up_to)s runnable jobs of %(queue)s for %(taken_by)s, in one statement.

    Highest priority first, then push order (ids are time-ordered); only jobs whose
    `scheduled_at` has come; rows locked by another claimer are skipped. The attempt is
    counted here, so a job that keeps killing its process runs out of attempts.
    """
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
            sql.SQL("j.{}").format(sql.Identifier(c)) for c in JOB_COLUMNS
        ),
    )
