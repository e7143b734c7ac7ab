"""Metric history: a compact time series per queue, kept in PostgreSQL for charts.

The leader writes one point per queue every `resolution` seconds (10 s): jobs that finished in
the window by outcome (succeeded, failed, retrying), run and wait time percentiles (p50, p95)
of those jobs, and the queue's depth (runnable and running jobs) at the end of the window.
Every minute and every hour it rolls the finer points up (counts summed; p50 the mean of the
finer p50s weighted by their job counts, p95 the largest finer p95 — an upper bound). Old
points go: 10 s points after `keep_10s` (2 h), minute points after `keep_1m` (2 days), hour
points after `keep_1h` (60 days). So a queue costs at most 720 + 2,880 + 1,440 rows, whatever
the job rate: 360 + 60 + 1 rows written per queue and hour.

Read it with :func:`history` (or `Chancy.metrics`, the same): points of one resolution since a
time, oldest first. The dashboard charts it.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio

from chancy.migrations import Migration
from chancy.plugin import Plugin, check_seconds, leader_passes

if TYPE_CHECKING:
    from psycopg import sql

    from chancy._sql import Tables
    from chancy.app import Chancy
    from chancy.worker import Worker

TABLE = "metric_points"
RESOLUTIONS = (10, 60, 3600)


def _table(tables: Tables) -> sql.Identifier:
    return tables(TABLE)


def _v1_up(t: Tables) -> list[sql.Composable]:
    return [
        t.q(
            """
            CREATE TABLE {points} (
                queue text NOT NULL,
                resolution integer NOT NULL,
                bucket timestamptz NOT NULL,
                succeeded integer NOT NULL DEFAULT 0,
                failed integer NOT NULL DEFAULT 0,
                retried integer NOT NULL DEFAULT 0,
                run_p50 double precision,
                run_p95 double precision,
                wait_p50 double precision,
                wait_p95 double precision,
                depth integer NOT NULL DEFAULT 0,
                PRIMARY KEY (queue, resolution, bucket)
            )""",
            points=_table(t),
        ),
    ]


def _v1_down(t: Tables) -> list[sql.Composable]:
    return [t.q("DROP TABLE IF EXISTS {points}", points=_table(t))]


MIGRATIONS = [Migration(1, "metric points", _v1_up, _v1_down)]


@dataclasses.dataclass(frozen=True)
class MetricPoint:
    """One queue's figures over one window (`bucket` is the window's start, UTC)."""

    queue: str
    resolution: int
    bucket: datetime
    succeeded: int
    failed: int
    retried: int
    run_p50: float | None
    run_p95: float | None
    wait_p50: float | None
    wait_p95: float | None
    depth: int


# The finest points, straight from the jobs table: finished jobs of the window by their
# completed_at (served by the finished-jobs index), retried attempts by their errors'
# count is not kept, so "retried" counts retrying jobs whose last attempt started in it.
_SAMPLE = """
    WITH done AS (
        SELECT queue, state,
               extract(epoch FROM completed_at - started_at) AS run,
               extract(epoch FROM started_at - scheduled_at) AS wait
        FROM {jobs}
        WHERE state IN ('succeeded', 'failed')
          AND completed_at >= %(start)s AND completed_at < %(end)s
    ), retried AS (
        SELECT queue, count(*) AS n FROM {jobs}
        WHERE state = 'retrying' AND started_at >= %(start)s AND started_at < %(end)s
        GROUP BY queue
    ), figures AS (
        SELECT queue,
               count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE state = 'failed') AS failed,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY run) AS run_p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY run) AS run_p95,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY wait) AS wait_p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY wait) AS wait_p95
        FROM done GROUP BY queue
    ), depth AS (
        SELECT queue, count(*) AS n FROM {jobs}
        WHERE state IN ('pending', 'retrying', 'running') GROUP BY queue
    ), queues AS (
        SELECT queue FROM figures UNION SELECT queue FROM retried UNION SELECT queue FROM depth
    )
    INSERT INTO {points} (queue, resolution, bucket, succeeded, failed, retried,
                          run_p50, run_p95, wait_p50, wait_p95, depth)
    SELECT q.queue, %(resolution)s, %(start)s, coalesce(f.succeeded, 0), coalesce(f.failed, 0),
           coalesce(r.n, 0), f.run_p50, f.run_p95, f.wait_p50, f.wait_p95, coalesce(d.n, 0)
    FROM queues q
    LEFT JOIN figures f ON f.queue = q.queue
    LEFT JOIN retried r ON r.queue = q.queue
    LEFT JOIN depth d ON d.queue = q.queue
    ON CONFLICT (queue, resolution, bucket) DO UPDATE SET
        succeeded = EXCLUDED.succeeded, failed = EXCLUDED.failed, retried = EXCLUDED.retried,
        run_p50 = EXCLUDED.run_p50, run_p95 = EXCLUDED.run_p95,
        wait_p50 = EXCLUDED.wait_p50, wait_p95 = EXCLUDED.wait_p95, depth = EXCLUDED.depth
"""

# A coarser point from the finer points of its window.
_ROLL_UP = """
    INSERT INTO {points} (queue, resolution, bucket, succeeded, failed, retried,
                          run_p50, run_p95, wait_p50, wait_p95, depth)
    SELECT queue, %(resolution)s, %(start)s, sum(succeeded), sum(failed), sum(retried),
           sum(run_p50 * (succeeded + failed)) / nullif(sum(succeeded + failed)
               FILTER (WHERE run_p50 IS NOT NULL), 0),
           max(run_p95),
           sum(wait_p50 * (succeeded + failed)) / nullif(sum(succeeded + failed)
               FILTER (WHERE wait_p50 IS NOT NULL), 0),
           max(wait_p95),
           (array_agg(depth ORDER BY bucket DESC))[1]
    FROM {points}
    WHERE resolution = %(finer)s AND bucket >= %(start)s AND bucket < %(end)s
    GROUP BY queue
    ON CONFLICT (queue, resolution, bucket) DO UPDATE SET
        succeeded = EXCLUDED.succeeded, failed = EXCLUDED.failed, retried = EXCLUDED.retried,
        run_p50 = EXCLUDED.run_p50, run_p95 = EXCLUDED.run_p95,
        wait_p50 = EXCLUDED.wait_p50, wait_p95 = EXCLUDED.wait_p95, depth = EXCLUDED.depth
"""

_PRUNE = "DELETE FROM {points} WHERE resolution = %(resolution)s AND bucket < %(before)s"

_READ = """
    SELECT queue, resolution, bucket, succeeded, failed, retried,
           run_p50, run_p95, wait_p50, wait_p95, depth
    FROM {points}
    WHERE resolution = %(resolution)s AND bucket >= %(since)s
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    ORDER BY bucket, queue
"""


def _floor(moment: datetime, seconds: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


async def record(
    chancy: Chancy, now: datetime | None = None, *, after: datetime | None = None
) -> datetime:
    """Write the points due at `now` (default: now, UTC): every complete 10 s window since
    `after` (the end of the last window written; default: just the last one, at most 30),
    and the last complete minute and hour rolled up. Returns the end of the last window."""
    now = now or datetime.now(UTC)
    points = _table(chancy.tables)
    step = timedelta(seconds=RESOLUTIONS[0])
    last = _floor(now, RESOLUTIONS[0])
    first = last - step if after is None else max(after, last - 30 * step)
    async with chancy.db.connection() as conn, conn.transaction():
        end = first + step
        while end <= last:
            await conn.execute(
                chancy.tables.q(_SAMPLE, points=points),
                {"start": end - step, "end": end, "resolution": RESOLUTIONS[0]},
            )
            end += step
        for finer, coarser in itertools.pairwise(RESOLUTIONS):
            c_end = _floor(now, coarser)
            await conn.execute(
                chancy.tables.q(_ROLL_UP, points=points),
                {
                    "start": c_end - timedelta(seconds=coarser),
                    "end": c_end,
                    "resolution": coarser,
                    "finer": finer,
                },
            )
    return last


async def prune(chancy: Chancy, keep: dict[int, float], now: datetime | None = None) -> int:
    """Delete points older than `keep[resolution]` seconds; returns rows removed."""
    now = now or datetime.now(UTC)
    removed = 0
    async with chancy.db.connection() as conn:
        for resolution, seconds in keep.items():
            rows = await conn.fetchall(
                chancy.tables.q(_PRUNE + " RETURNING 1", points=_table(chancy.tables)),
                {"resolution": resolution, "before": now - timedelta(seconds=seconds)},
            )
            removed += len(rows)
    return removed


async def history(
    chancy: Chancy,
    *,
    queue: str | None = None,
    since: datetime | timedelta | None = None,
    resolution: int = 60,
) -> list[MetricPoint]:
    """Points of `resolution` (10, 60 or 3600 s) since `since` (a datetime, or a timedelta
    ago; default: 60 points back), of one queue or of all, oldest first."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution: expected one of {RESOLUTIONS}, got {resolution!r}")
    if since is None:
        since = timedelta(seconds=60 * resolution)
    moment = datetime.now(UTC) - since if isinstance(since, timedelta) else since
    if moment.tzinfo is None:
        raise ValueError("since: expected a timezone-aware datetime (or a timedelta)")
    async with chancy.db.connection() as conn:
        rows = await conn.fetchall(
            chancy.tables.q(_READ, points=_table(chancy.tables)),
            {"resolution": resolution, "since": moment, "queue": queue},
        )
    return [MetricPoint(*row) for row in rows]


class Metrics(Plugin):
    """On the leader, records a point per queue every 10 s and rolls points up (see module).

    :param keep_10s: seconds 10-second points are kept (default 2 h).
    :param keep_1m: seconds minute points are kept (default 2 days).
    :param keep_1h: seconds hour points are kept (default 60 days).
    """

    identifier = "metrics"
    dependencies = ("leadership",)
    leader_only = True

    def __init__(
        self,
        *,
        keep_10s: float = 2 * 3600,
        keep_1m: float = 2 * 86400,
        keep_1h: float = 60 * 86400,
    ) -> None:
        self.keep = {
            10: check_seconds("keep_10s", keep_10s),
            60: check_seconds("keep_1m", keep_1m),
            3600: check_seconds("keep_1h", keep_1h),
        }
        #: Passes completed (for tests).
        self.passes = 0
        self._last: datetime | None = None

    def migrations(self) -> list[Migration]:
        return MIGRATIONS

    async def cleanup(self, chancy: Chancy) -> int:
        return await prune(chancy, self.keep)

    async def run(
        self, worker: Worker, chancy: Chancy, *, task_status: Any = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()

        async def one_pass() -> None:
            try:
                self._last = await record(chancy, after=self._last)
                if self.passes % 60 == 0:  # every ten minutes or so
                    await prune(chancy, self.keep)
            except Exception as exc:
                chancy.log.warning("metrics: recording failed (%s); retrying next pass", exc)
            else:
                self.passes += 1

        await leader_passes(worker, RESOLUTIONS[0], one_pass)
