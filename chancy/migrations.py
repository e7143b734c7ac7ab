"""Numbered schema migrations, up and down, serialised by an advisory lock.

The core and every plugin are separate *components*, each with its own version number in the
`<prefix>schema_versions` table. A component's migrations are a list of `Migration`, numbered
from 1; version 0 means "none applied".
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from psycopg import sql

from chancy._sql import Tables

if TYPE_CHECKING:
    from chancy._db import Conn

Statements = Callable[[Tables], Sequence[sql.Composable]]


@dataclasses.dataclass(frozen=True)
class Migration:
    """One schema step: `up` and `down` build the statements for an app's tables."""

    version: int
    description: str
    up: Statements
    down: Statements


def lock_key(tables: Tables) -> int:
    """The advisory lock that serialises migrations of one prefix."""
    return zlib.crc32(f"chancy-migrate:{tables.prefix}".encode()) - 2**31


async def _ensure_versions_table(conn: Conn, tables: Tables) -> None:
    await conn.execute(
        tables.q(
            "CREATE TABLE IF NOT EXISTS {schema_versions} ("
            " component text PRIMARY KEY, version integer NOT NULL)"
        )
    )


async def current_version(conn: Conn, tables: Tables, component: str) -> int:
    """The applied version of `component` (0 when none, or when the table is missing)."""
    row = await conn.fetchone(
        "SELECT to_regclass(%s) IS NOT NULL", (tables.prefix + "schema_versions",)
    )
    if not row or not row[0]:
        return 0
    row = await conn.fetchone(
        tables.q("SELECT version FROM {schema_versions} WHERE component = %s"), (component,)
    )
    return row[0] if row else 0


async def migrate_component(
    conn: Conn,
    tables: Tables,
    component: str,
    migrations: Sequence[Migration],
    to_version: int | None = None,
) -> tuple[int, int]:
    """Bring `component` to `to_version` (latest when None), in one locked transaction.

    Returns (version before, version after).
    """
    ordered = sorted(migrations, key=lambda m: m.version)
    if [m.version for m in ordered] != list(range(1, len(ordered) + 1)):
        raise ValueError(f"{component}: migrations must be numbered 1..N without gaps")
    target = len(ordered) if to_version is None else to_version
    if not 0 <= target <= len(ordered):
        raise ValueError(f"{component}: no migration version {target} (latest is {len(ordered)})")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(tables),))
        await _ensure_versions_table(conn, tables)
        before = await current_version(conn, tables, component)
        if target > before:
            steps = [(m, m.up) for m in ordered[before:target]]
        else:
            steps = [(m, m.down) for m in reversed(ordered[target:before])]
        for _migration, build in steps:
            for statement in build(tables):
                await conn.execute(statement)
        if target != before:
            await conn.execute(
                tables.q(
                    "INSERT INTO {schema_versions} (component, version) VALUES (%s, %s)"
                    " ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version"
                ),
                (component, target),
            )
    return before, target


# -- the core schema -------------------------------------------------------------------------


def _v1_up(t: Tables) -> list[sql.Composable]:
    return [
        t.q(
            """
            CREATE TABLE {queues} (
                name text PRIMARY KEY,
                concurrency integer NOT NULL,
                tags text[] NOT NULL,
                state text NOT NULL,
                executor text NOT NULL,
                executor_options jsonb NOT NULL DEFAULT '{{}}',
                polling_interval double precision NOT NULL,
                rate_limit integer,
                rate_limit_window integer,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now()
            )"""
        ),
        t.q(
            """
            CREATE TABLE {jobs} (
                id uuid PRIMARY KEY,
                queue text NOT NULL,
                func text NOT NULL,
                kwargs jsonb NOT NULL DEFAULT '{{}}',
                priority integer NOT NULL DEFAULT 0,
                max_attempts integer NOT NULL DEFAULT 1,
                attempts integer NOT NULL DEFAULT 0,
                state text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'running', 'retrying', 'succeeded', 'failed')),
                scheduled_at timestamptz NOT NULL DEFAULT now(),
                created_at timestamptz NOT NULL DEFAULT now(),
                started_at timestamptz,
                completed_at timestamptz,
                limits jsonb NOT NULL DEFAULT '[]',
                meta jsonb NOT NULL DEFAULT '{{}}',
                errors jsonb NOT NULL DEFAULT '[]',
                unique_key text,
                taken_by text,
                cancel_requested boolean NOT NULL DEFAULT false
            )"""
        ),
        # The claim reads only runnable rows, in claim order: finished rows cost nothing.
        t.q(
            "CREATE INDEX {idx} ON {jobs} (queue, priority DESC, id)"
            " WHERE state IN ('pending', 'retrying')",
            idx=t("jobs_runnable_idx"),
        ),
        t.q(
            "CREATE UNIQUE INDEX {idx} ON {jobs} (unique_key)"
            " WHERE unique_key IS NOT NULL AND state IN ('pending', 'running', 'retrying')",
            idx=t("jobs_unique_key_idx"),
        ),
        t.q(
            "CREATE INDEX {idx} ON {jobs} (taken_by) WHERE state = 'running'",
            idx=t("jobs_running_idx"),
        ),
        t.q(
            "CREATE INDEX {idx} ON {jobs} (completed_at) WHERE state IN ('succeeded', 'failed')",
            idx=t("jobs_finished_idx"),
        ),
    ]


def _v1_down(t: Tables) -> list[sql.Composable]:
    return [t.q("DROP TABLE IF EXISTS {jobs}"), t.q("DROP TABLE IF EXISTS {queues}")]


def _v2_up(t: Tables) -> list[sql.Composable]:
    return [
        t.q(
            """
            CREATE TABLE {workers} (
                worker_id text PRIMARY KEY,
                incarnation text NOT NULL,
                hostname text NOT NULL,
                pid integer NOT NULL,
                tags text[] NOT NULL DEFAULT '{{}}',
                queues text[] NOT NULL DEFAULT '{{}}',
                started_at timestamptz NOT NULL DEFAULT now(),
                last_seen timestamptz NOT NULL DEFAULT now(),
                expires_at timestamptz NOT NULL
            )"""
        ),
        t.q(
            """
            CREATE TABLE {leader} (
                id integer PRIMARY KEY CHECK (id = 1),
                worker_id text NOT NULL,
                incarnation text NOT NULL,
                elected_at timestamptz NOT NULL DEFAULT now(),
                expires_at timestamptz NOT NULL
            )"""
        ),
        t.q(
            """
            CREATE TABLE {rate_limits} (
                queue text PRIMARY KEY,
                window_start timestamptz NOT NULL,
                used integer NOT NULL DEFAULT 0
            )"""
        ),
    ]


def _v2_down(t: Tables) -> list[sql.Composable]:
    return [
        t.q("DROP TABLE IF EXISTS {rate_limits}"),
        t.q("DROP TABLE IF EXISTS {leader}"),
        t.q("DROP TABLE IF EXISTS {workers}"),
    ]


def _v3_up(t: Tables) -> list[sql.Composable]:
    return [
        t.q("ALTER TABLE {workers} ADD COLUMN queue_status jsonb NOT NULL DEFAULT '{{}}'::jsonb"),
    ]


def _v3_down(t: Tables) -> list[sql.Composable]:
    return [t.q("ALTER TABLE {workers} DROP COLUMN IF EXISTS queue_status")]


def _v4_up(t: Tables) -> list[sql.Composable]:
    return [
        # A paused queue with a resume_at reads as active once that time has passed.
        t.q("ALTER TABLE {queues} ADD COLUMN resume_at timestamptz"),
        # `list_jobs` of one queue and a finished state, newest first ("the last 100 failures
        # of the mail queue"), with keyset pagination on the id. Finished rows only: the row
        # versions of running and waiting jobs (two of every job's three) add no entries.
        t.q(
            "CREATE INDEX {idx} ON {jobs} (queue, state, id) WHERE state IN ('succeeded', 'failed')",
            idx=t("jobs_finished_list_idx"),
        ),
    ]


def _v4_down(t: Tables) -> list[sql.Composable]:
    return [
        t.q("DROP INDEX IF EXISTS {idx}", idx=t("jobs_finished_list_idx")),
        t.q("ALTER TABLE {queues} DROP COLUMN IF EXISTS resume_at"),
    ]


def _v5_up(t: Tables) -> list[sql.Composable]:
    return [t.q("ALTER TABLE {jobs} ADD COLUMN result jsonb")]


def _v5_down(t: Tables) -> list[sql.Composable]:
    return [t.q("ALTER TABLE {jobs} DROP COLUMN IF EXISTS result")]


def _v6_up(t: Tables) -> list[sql.Composable]:
    # The claim walks the due jobs of each priority level in (scheduled_at, id) order: future
    # jobs, however many and whatever their priority, are never scanned (benchmarks/pressure.py).
    return [
        t.q(
            "CREATE INDEX {idx} ON {jobs} (queue, priority DESC, scheduled_at, id)"
            " WHERE state IN ('pending', 'retrying')",
            idx=t("jobs_due_idx"),
        ),
        t.q("DROP INDEX IF EXISTS {idx}", idx=t("jobs_runnable_idx")),
    ]


def _v6_down(t: Tables) -> list[sql.Composable]:
    return [
        t.q(
            "CREATE INDEX {idx} ON {jobs} (queue, priority DESC, id)"
            " WHERE state IN ('pending', 'retrying')",
            idx=t("jobs_runnable_idx"),
        ),
        t.q("DROP INDEX IF EXISTS {idx}", idx=t("jobs_due_idx")),
    ]


CORE = "core"
CORE_MIGRATIONS: list[Migration] = [
    Migration(1, "queues and jobs", _v1_up, _v1_down),
    Migration(2, "workers, leader and rate limits", _v2_up, _v2_down),
    Migration(3, "per-queue status of each worker", _v3_up, _v3_down),
    Migration(4, "queue resume_at; index for listing finished jobs", _v4_up, _v4_down),
    Migration(5, "the result of each job", _v5_up, _v5_down),
    Migration(6, "claim index by priority, then due time", _v6_up, _v6_down),
]
