"""Trigger: a change to a row of one of your tables pushes a job, inside that change's
transaction (so the job exists exactly when the change committed, whether or not a worker
runs)::

    from chancy.plugins.trigger import Trigger

    chancy = Chancy(dsn, plugins=[Trigger()])
    await chancy.migrate()  # installs the trigger function and the registry table
    trigger_id = await Trigger.register_trigger(
        chancy, table_name="users", operations=["INSERT", "UPDATE"], job_template=welcome
    )

Each changed row pushes one job: the template's job with the row's key added to its kwargs
(`key_column`, default ``id``, under the name `key_argument`, default the column's name) and
``meta["trigger"]`` naming the operation, table and trigger. For a DELETE the key is the deleted
row's. The PostgreSQL trigger on your table (``AFTER ... FOR EACH ROW``) is created by
`register_trigger` and dropped by `unregister_trigger`; migrating the plugin down drops every
trigger it registered, then its function and table. A template with a `unique_key` pushes no
second job while one with that key is unfinished.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import TYPE_CHECKING, Any

from psycopg import sql

from chancy._db import dumps
from chancy.errors import ChancyError
from chancy.job import Job
from chancy.migrations import Migration
from chancy.plugin import Plugin

if TYPE_CHECKING:
    from datetime import datetime

    from chancy._sql import Tables
    from chancy.app import Chancy

OPERATIONS = ("INSERT", "UPDATE", "DELETE")


class TriggerError(ChancyError, ValueError):
    """A trigger that cannot be registered: unknown table or column, bad operations."""


def _names(t: Tables) -> dict[str, sql.Composable]:
    return {
        "triggers": t("triggers"),
        "fn": t("trigger_fn"),
        "chan": sql.Literal(t.channel),
    }


def _v1_up(t: Tables) -> list[sql.Composable]:
    return [
        t.q(
            """
            CREATE TABLE {triggers} (
                id uuid PRIMARY KEY,
                schema_name text NOT NULL,
                table_name text NOT NULL,
                trigger_name text NOT NULL,
                operations text[] NOT NULL,
                key_column text NOT NULL,
                key_argument text NOT NULL,
                job jsonb NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now()
            )""",
            **_names(t),
        ),
        # Pushes the registered job for the changed row. The id is a UUIDv7 made here (the
        # clock's milliseconds over a random UUID), so id order stays push order.
        t.q(
            """
            CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$
            DECLARE
                cfg record;
                rec jsonb;
                new_id uuid;
            BEGIN
                SELECT * INTO cfg FROM {triggers} WHERE id = TG_ARGV[0]::uuid;
                IF NOT FOUND THEN
                    RETURN NULL;
                END IF;
                rec := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
                new_id := encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp())
                        * 1000)::bigint) FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid;
                INSERT INTO {jobs} (id, queue, func, kwargs, priority, max_attempts, limits,
                                    unique_key, meta)
                VALUES (
                    new_id,
                    cfg.job ->> 'queue',
                    cfg.job ->> 'func',
                    coalesce(cfg.job -> 'kwargs', '{{}}'::jsonb)
                        || jsonb_build_object(cfg.key_argument, rec -> cfg.key_column),
                    coalesce((cfg.job ->> 'priority')::integer, 0),
                    coalesce((cfg.job ->> 'max_attempts')::integer, 1),
                    coalesce(cfg.job -> 'limits', '[]'::jsonb),
                    cfg.job ->> 'unique_key',
                    coalesce(cfg.job -> 'meta', '{{}}'::jsonb) || jsonb_build_object(
                        'trigger', jsonb_build_object(
                            'id', cfg.id, 'operation', TG_OP, 'schema_name', TG_TABLE_SCHEMA,
                            'table_name', TG_TABLE_NAME, 'trigger_name', TG_NAME,
                            'timestamp', clock_timestamp())))
                ON CONFLICT (unique_key)
                    WHERE unique_key IS NOT NULL AND state IN ('pending', 'running', 'retrying')
                    DO NOTHING;
                PERFORM pg_notify({chan}, json_build_object('t', 'pushed', 'q',
                    json_build_array(cfg.job ->> 'queue'))::text);
                RETURN NULL;
            END
            $fn$""",
            **_names(t),
        ),
    ]


def _v1_down(t: Tables) -> list[sql.Composable]:
    return [
        # Every trigger registered on users' tables goes first.
        t.q(
            """
            DO $do$
            DECLARE r record;
            BEGIN
                IF to_regclass({table}) IS NOT NULL THEN
                    FOR r IN EXECUTE format('SELECT schema_name, table_name, trigger_name FROM %I',
                                            {name}) LOOP
                        IF to_regclass(format('%I.%I', r.schema_name, r.table_name)) IS NOT NULL
                        THEN
                            EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I.%I',
                                r.trigger_name, r.schema_name, r.table_name);
                        END IF;
                    END LOOP;
                END IF;
            END
            $do$""",
            table=sql.Literal(t.prefix + "triggers"),
            name=sql.Literal(t.prefix + "triggers"),
        ),
        t.q("DROP FUNCTION IF EXISTS {fn}()", **_names(t)),
        t.q("DROP TABLE IF EXISTS {triggers}", **_names(t)),
    ]


@dataclasses.dataclass(frozen=True)
class TriggerConfig:
    """A registered trigger."""

    id: str
    schema_name: str
    table_name: str
    trigger_name: str
    operations: list[str]
    key_column: str
    key_argument: str
    job_template: Job
    created_at: datetime | None


def _as_job(job: Job | Any) -> Job:
    found = job if isinstance(job, Job) else getattr(job, "job", None)
    if not isinstance(found, Job):
        raise TriggerError(f"job_template: expected a Job or an @job function, got {job!r}")
    return found


class Trigger(Plugin):
    """Pushes a job for each row changed in a registered table (see the module's docstring)."""

    identifier = "trigger"

    def migrations(self) -> list[Migration]:
        return [Migration(1, "trigger registry and function", _v1_up, _v1_down)]

    @classmethod
    async def register_trigger(
        cls,
        chancy: Chancy,
        *,
        table_name: str,
        operations: list[str],
        job_template: Job | Any,
        schema_name: str = "public",
        key_column: str = "id",
        key_argument: str | None = None,
    ) -> str:
        """Push `job_template` (with the row's `key_column` as kwarg `key_argument`) for each
        row of `schema_name.table_name` that an INSERT, UPDATE or DELETE of `operations`
        changes; returns the trigger's id. `TriggerError` names an unknown table or column."""
        job = _as_job(job_template)
        ops = [str(op).upper() for op in operations or []]
        bad = [op for op in ops if op not in OPERATIONS]
        if not ops or bad:
            raise TriggerError(
                f"operations: expected some of {list(OPERATIONS)}, got {list(operations or [])}"
            )
        trigger_id = str(uuid.uuid4())
        trigger_name = f"{chancy.prefix}trg_{trigger_id.replace('-', '')}"
        argument = key_argument or key_column
        packed = job.pack()
        packed.pop("scheduled_at", None)
        async with chancy.db.connection() as conn, conn.transaction():
            found = await conn.fetchone(
                "SELECT a.attname FROM pg_attribute a"
                " WHERE a.attrelid = to_regclass(%s) AND a.attname = %s AND NOT a.attisdropped",
                (sql.Identifier(schema_name, table_name).as_string(None), key_column),
            )
            if found is None:
                exists = await conn.fetchone(
                    "SELECT to_regclass(%s)",
                    (sql.Identifier(schema_name, table_name).as_string(None),),
                )
                if exists is None or exists[0] is None:
                    raise TriggerError(f"no table {schema_name}.{table_name}")
                raise TriggerError(f"table {schema_name}.{table_name} has no column {key_column!r}")
            await conn.execute(
                chancy.tables.q(
                    "INSERT INTO {triggers} (id, schema_name, table_name, trigger_name,"
                    " operations, key_column, key_argument, job)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    **_names(chancy.tables),
                ),
                (
                    trigger_id,
                    schema_name,
                    table_name,
                    trigger_name,
                    ops,
                    key_column,
                    argument,
                    dumps(packed),
                ),
            )
            await conn.execute(
                sql.SQL(
                    "CREATE TRIGGER {name} AFTER {ops} ON {table}"
                    " FOR EACH ROW EXECUTE FUNCTION {fn}({arg})"
                ).format(
                    name=sql.Identifier(trigger_name),
                    ops=sql.SQL(" OR ").join(sql.SQL(op) for op in ops),
                    table=sql.Identifier(schema_name, table_name),
                    fn=chancy.tables("trigger_fn"),
                    arg=sql.Literal(trigger_id),
                )
            )
        return trigger_id

    @classmethod
    async def unregister_trigger(cls, chancy: Chancy, trigger_id: str) -> bool:
        """Drop the trigger `trigger_id` from its table; True if it existed."""
        async with chancy.db.connection() as conn, conn.transaction():
            row = await conn.fetchone(
                chancy.tables.q(
                    "DELETE FROM {triggers} WHERE id = %s"
                    " RETURNING schema_name, table_name, trigger_name",
                    **_names(chancy.tables),
                ),
                (str(uuid.UUID(str(trigger_id))),),
            )
            if row is None:
                return False
            schema_name, table_name, trigger_name = row
            await conn.execute(
                sql.SQL("DROP TRIGGER IF EXISTS {name} ON {table}").format(
                    name=sql.Identifier(trigger_name),
                    table=sql.Identifier(schema_name, table_name),
                )
            )
        return True

    @classmethod
    async def get_triggers(cls, chancy: Chancy) -> list[TriggerConfig]:
        """Every registered trigger, oldest first."""
        async with chancy.db.connection() as conn:
            rows = await conn.fetchall(
                chancy.tables.q(
                    "SELECT id::text, schema_name, table_name, trigger_name, operations,"
                    " key_column, key_argument, job, created_at FROM {triggers}"
                    " ORDER BY created_at, id",
                    **_names(chancy.tables),
                )
            )
        return [
            TriggerConfig(
                id=row[0],
                schema_name=row[1],
                table_name=row[2],
                trigger_name=row[3],
                operations=list(row[4]),
                key_column=row[5],
                key_argument=row[6],
                job_template=Job.unpack(row[7]),
                created_at=row[8],
            )
            for row in rows
        ]


__all__ = ["Trigger", "TriggerConfig", "TriggerError"]
