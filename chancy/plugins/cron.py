"""Cron: push jobs on a schedule written as a cron expression.

Schedules live in the ``<prefix>cron_schedules`` table (this plugin's migrations), so they are
shared by every worker and survive restarts::

    from chancy.plugins.cron import Cron, schedule

    chancy = Chancy(dsn, plugins=[*default_plugins(), Cron()])
    await chancy.migrate()
    await schedule(chancy, "*/5 * * * *", Job.from_func(refresh), name="refresh")

Expressions are parsed by `croniter` (five fields, or six with seconds last) and evaluated in
UTC unless a `timezone` (an IANA name such as ``"Europe/Paris"``) is given. Every worker runs
the plugin; each due schedule is fired by exactly one of them, once per tick: the firing
worker locks the schedule row, pushes the job and moves `next_run` past the present in one
transaction (ticks missed while no worker ran are skipped, not caught up). The pushed job
carries the unique key ``cron:<name>:<tick>`` unless the scheduled job has a `unique_key` of
its own, which then keeps a tick from starting while the previous run is unfinished.
"""

from __future__ import annotations

import collections
import dataclasses
import zoneinfo
from datetime import UTC, datetime, timezone
from typing import TYPE_CHECKING, Any

import anyio

from chancy._db import dumps
from chancy.errors import InvalidJobError, UnknownQueueError
from chancy.job import Job
from chancy.migrations import Migration
from chancy.plugin import Plugin, check_seconds, emit

if TYPE_CHECKING:
    from psycopg import sql

    from chancy._sql import Tables
    from chancy.app import Chancy
    from chancy.worker import Worker

TABLE = "cron_schedules"


def _table(tables: Tables) -> sql.Identifier:
    return tables(TABLE)


def _v1_up(t: Tables) -> list[sql.Composable]:
    return [
        t.q(
            """
            CREATE TABLE {schedules} (
                name text PRIMARY KEY,
                cron text NOT NULL,
                timezone text,
                job jsonb NOT NULL,
                next_run timestamptz NOT NULL,
                last_run timestamptz,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now()
            )""",
            schedules=_table(t),
        ),
        t.q(
            "CREATE INDEX {idx} ON {schedules} (next_run)",
            idx=t(TABLE + "_next_idx"),
            schedules=_table(t),
        ),
    ]


def _v1_down(t: Tables) -> list[sql.Composable]:
    return [t.q("DROP TABLE IF EXISTS {schedules}", schedules=_table(t))]


MIGRATIONS = [Migration(1, "cron schedules", _v1_up, _v1_down)]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A stored schedule: the job pushed each time `cron` matches, in `timezone` (None: UTC)."""

    name: str
    cron: str
    job: Job
    timezone: str | None
    next_run: datetime
    last_run: datetime | None


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:  # pragma: no cover - depends on the installation
        raise ImportError(
            "the cron plugin needs croniter: pip install 'chancy-queue[cron]'"
        ) from None
    return croniter


def _zone(name: str | None) -> zoneinfo.ZoneInfo | timezone:
    if name is None:
        return UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone: unknown time zone {name!r}") from None


def check_cron(cron: str) -> str:
    """`cron` if croniter accepts it (5 fields, or 6 with seconds last), else `ValueError`."""
    if not isinstance(cron, str) or not _croniter().is_valid(cron):
        raise ValueError(f"cron: {cron!r} is not a valid cron expression")
    return cron


def next_tick(cron: str, tz: str | None, after: datetime) -> datetime:
    """The first time strictly after `after` that `cron` matches in `tz`, in UTC."""
    start = after.astimezone(_zone(tz))
    tick: datetime = _croniter()(cron, start).get_next(datetime)
    return tick.astimezone(UTC)


def _as_job(job: Job | Any) -> Job:
    found = job if isinstance(job, Job) else getattr(job, "job", None)
    if not isinstance(found, Job):
        raise InvalidJobError(f"expected a Job or an @job function, got {job!r}")
    return found


async def _now(conn: Any) -> datetime:
    row = await conn.fetchone("SELECT now()")
    now: datetime = row[0]
    return now


async def schedule(
    chancy: Chancy,
    cron: str,
    job: Job | Any,
    *,
    name: str | None = None,
    timezone: str | None = None,
) -> Schedule:
    """Push `job` every time `cron` matches; replaces a schedule of the same `name`.

    `name` defaults to the job's function path. Returns the stored schedule.
    """
    check_cron(cron)
    _zone(timezone)
    found = _as_job(job)
    name = name or found.func
    packed = found.pack()
    packed.pop("scheduled_at", None)
    table = _table(chancy.tables)
    async with chancy.db.connection() as conn:
        next_run = next_tick(cron, timezone, await _now(conn))
        await conn.execute(
            chancy.tables.q(
                """
                INSERT INTO {schedules} (name, cron, timezone, job, next_run)
                VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (name) DO UPDATE SET cron = EXCLUDED.cron,
                    timezone = EXCLUDED.timezone, job = EXCLUDED.job,
                    next_run = EXCLUDED.next_run, updated_at = now()
                """,
                schedules=table,
            ),
            (name, cron, timezone, dumps(packed), next_run),
        )
    return Schedule(name, cron, Job.unpack(packed), timezone, next_run, None)


async def unschedule(chancy: Chancy, name: str) -> bool:
    """Remove the schedule `name`; True if it existed."""
    async with chancy.db.connection() as conn:
        row = await conn.fetchone(
            chancy.tables.q(
                "DELETE FROM {schedules} WHERE name = %s RETURNING name",
                schedules=_table(chancy.tables),
            ),
            (name,),
        )
    return row is not None


async def get_schedules(chancy: Chancy) -> list[Schedule]:
    """Every stored schedule, by name."""
    async with chancy.db.connection() as conn:
        rows = await conn.fetchall(
            chancy.tables.q(
                "SELECT name, cron, job, timezone, next_run, last_run FROM {schedules}"
                " ORDER BY name",
                schedules=_table(chancy.tables),
            )
        )
    return [
        Schedule(name, cron, Job.unpack(job), tz, next_run, last_run)
        for name, cron, job, tz, next_run, last_run in rows
    ]


async def fire_due(chancy: Chancy, *, limit: int = 100) -> tuple[list[tuple[str, datetime]], float]:
    """Fire every schedule that is due and not being fired by another worker.

    Returns the (name, tick) pairs fired here and the seconds until the next schedule is due
    (`inf` when there is none).
    """
    table = _table(chancy.tables)
    fired: list[tuple[str, datetime]] = []
    async with chancy.db.connection() as conn:
        async with conn.transaction():
            now = await _now(conn)
            rows = await conn.fetchall(
                chancy.tables.q(
                    "SELECT name, cron, timezone, job, next_run FROM {schedules}"
                    " WHERE next_run <= now() ORDER BY next_run LIMIT %s"
                    " FOR UPDATE SKIP LOCKED",
                    schedules=table,
                ),
                (limit,),
            )
            for name, cron, tz, packed, tick in rows:
                try:
                    following = next_tick(cron, tz, max(now, tick))
                except Exception as exc:  # edited by hand into something unusable
                    chancy.log.error(
                        "cron: schedule %r cannot be evaluated (%s); looking again in an hour",
                        name,
                        exc,
                    )
                    await conn.execute(
                        chancy.tables.q(
                            "UPDATE {schedules} SET next_run = now() + interval '1 hour'"
                            " WHERE name = %s",
                            schedules=table,
                        ),
                        (name,),
                    )
                    continue
                try:
                    job = Job.unpack(packed).with_scheduled_at(tick)
                    if job.unique_key is None:
                        job = job.with_unique_key(f"cron:{name}:{tick.isoformat()}")
                    await chancy._push_conn(conn, [job], 0)
                    fired.append((name, tick))
                except (UnknownQueueError, InvalidJobError, ValueError, KeyError) as exc:
                    chancy.log.error("cron: schedule %r could not push its job: %s", name, exc)
                await conn.execute(
                    chancy.tables.q(
                        "UPDATE {schedules} SET next_run = %s, last_run = %s"
                        " WHERE name = %s AND next_run = %s",
                        schedules=table,
                    ),
                    (following, tick, name, tick),
                )
        row = await conn.fetchone(
            chancy.tables.q(
                "SELECT extract(epoch FROM min(next_run) - now())::float8 FROM {schedules}",
                schedules=table,
            )
        )
    wait = float("inf") if row is None or row[0] is None else max(float(row[0]), 0.0)
    return fired, wait


class Cron(Plugin):
    """Fires stored cron schedules (see `schedule`); runs on every worker.

    :param poll_interval: the longest time between looks at the schedules (new or changed
        schedules are noticed within it); a known next tick is waited for precisely.
    """

    identifier = "cron"

    def __init__(self, *, poll_interval: float = 10) -> None:
        self.poll_interval = check_seconds("poll_interval", poll_interval)
        #: (name, tick) of every schedule this instance fired (for tests and metrics).
        self.fired: collections.deque[tuple[str, datetime]] = collections.deque(maxlen=1000)

    def migrations(self) -> list[Migration]:
        return list(MIGRATIONS)

    async def run(
        self, worker: Worker, chancy: Chancy, *, task_status: Any = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            wait = self.poll_interval
            try:
                fired, until_next = await fire_due(chancy)
            except Exception as exc:
                chancy.log.warning("cron: pass failed (%s); retrying", exc)
            else:
                self.fired += fired
                for name, tick in fired:
                    emit(worker, "cron.fired", name=name, tick=tick.isoformat())
                # A due schedule another worker is firing shows as due: look again shortly.
                wait = min(wait, max(until_next + 0.005, 0.05))
            await anyio.sleep(wait)
