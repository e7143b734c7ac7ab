"""The operator's read queries at scale: `list_jobs` ("the newest 100 failed jobs of one queue")
and `queue_stats`, with 2,000,000 finished + 40,000 runnable rows.

Standalone: it makes its tables under a scratch prefix in the database of `--dsn` (default
CHANCY_BENCH_DSN), fills them with set-based `INSERT ... SELECT generate_series` (ids are
time-ordered UUIDv7 like real ones: 14 days of history, 10 queues, 5 % failures), times each
query (median of `--runs`), prints the figures and plans, and drops its tables afterwards::

    python benchmarks/operator_queries.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

Goals: list_jobs < 5 ms, queue_stats < 20 ms.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio
from psycopg import sql

from chancy import Chancy, Queue
from chancy import _sql as queries

QUEUES = 10


def _id(moment: str, seed: str) -> str:
    """SQL for a UUIDv7 whose timestamp is the timestamptz `moment`."""
    return (
        f"(lpad(to_hex((extract(epoch FROM {moment}) * 1000)::bigint), 12, '0')"
        f" || '7' || substr(md5({seed}), 1, 3) || '8' || substr(md5({seed}), 4, 15))::uuid"
    )


def fill(app: Chancy, finished: int, runnable: int) -> float:
    started = time.perf_counter()
    jobs = app.tables.jobs
    finished_rows = sql.SQL(
        """
        INSERT INTO {jobs} (id, queue, func, state, attempts, max_attempts, scheduled_at,
                            created_at, started_at, completed_at, errors)
        SELECT """
        + _id("t", "i::text")
        + """, 'q' || (i %% {queues}), 'bench.job',
            CASE WHEN (i / {queues}) %% 20 = 0 THEN 'failed' ELSE 'succeeded' END, 1, 1, t, t, t,
            t + interval '50 milliseconds',
            CASE WHEN (i / {queues}) %% 20 = 0 THEN '[{{"attempt": 0, "traceback": "boom"}}]'::jsonb
                 ELSE '[]'::jsonb END
        FROM (SELECT i, now() - interval '14 days' * (1 - i::float8 / %(n)s) AS t
              FROM generate_series(1, %(n)s) AS i) s
        """
    ).format(jobs=jobs, queues=sql.Literal(QUEUES))
    runnable_rows = sql.SQL(
        """
        INSERT INTO {jobs} (id, queue, func, state, scheduled_at, created_at)
        SELECT """
        + _id("t", "'r' || i")
        + """, 'q' || (i %% {queues}), 'bench.job', 'pending', t, t
        FROM (SELECT i, now() - interval '10 minutes' * (1 - i::float8 / %(n)s) AS t
              FROM generate_series(1, %(n)s) AS i) s
        """
    ).format(jobs=jobs, queues=sql.Literal(QUEUES))
    with app.sync_pool.connection() as conn:
        conn.execute(finished_rows, {"n": finished})
        conn.execute(runnable_rows, {"n": runnable})
        conn.execute(
            sql.SQL(
                "INSERT INTO {workers} (worker_id, incarnation, hostname, pid, queues,"
                " expires_at) SELECT 'w' || i, 'x', 'h', i, ARRAY['q' || i], now() + interval"
                " '1 hour' FROM generate_series(0, {n}) AS i"
            ).format(workers=app.tables.workers, n=sql.Literal(QUEUES - 1))
        )
    with app.sync_pool.connection() as conn:
        conn.autocommit = True
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(jobs))
    return time.perf_counter() - started


def timed(runs: int, call) -> tuple[float, float, float]:
    call()  # warm the cache and the prepared statement
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), min(samples), max(samples)


def explain(app: Chancy, query: sql.Composed, params: dict) -> str:
    with app.sync_pool.connection() as conn:
        rows = conn.execute(
            sql.SQL("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ") + query, params
        ).fetchall()
    return "\n".join("    " + row[0] for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("CHANCY_BENCH_DSN"))
    parser.add_argument("--finished", type=int, default=2_000_000)
    parser.add_argument("--runnable", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn or set CHANCY_BENCH_DSN")
    prefix = f"bench_ops_{secrets.token_hex(3)}_"
    app = Chancy(args.dsn, prefix=prefix, plugins=[])

    async def migrate(to_version: int | None = None) -> None:
        async with app:
            await app.migrate(to_version=to_version)

    anyio.run(migrate)
    try:
        with app:
            for i in range(QUEUES):
                app.sync_declare(Queue(f"q{i}", executor=Chancy.Executor.Async))
            seconds = fill(app, args.finished, args.runnable)
            print(
                f"filled {args.finished:,} finished + {args.runnable:,} runnable rows"
                f" ({QUEUES} queues) in {seconds:.1f} s, prefix {prefix}"
            )
            newest = app.sync_list_jobs(queue="q3", state="failed", limit=100)
            assert len(newest) == 100, len(newest)
            figures = {
                "list_jobs(queue='q3', state='failed') newest 100": timed(
                    args.runs, lambda: app.sync_list_jobs(queue="q3", state="failed")
                ),
                "list_jobs(... after=<100th>) next page": timed(
                    args.runs,
                    lambda: app.sync_list_jobs(queue="q3", state="failed", after=newest[-1].id),
                ),
                "list_jobs(queue='q3') newest 100, any state": timed(
                    args.runs, lambda: app.sync_list_jobs(queue="q3")
                ),
                "queue_stats() (10 queues)": timed(args.runs, app.sync_queue_stats),
                "queue_stats('q3')": timed(args.runs, lambda: app.sync_queue_stats("q3")),
            }
            goals = {"list_jobs": 5.0, "queue_stats": 20.0}
            print(f"{'query':<52} {'median':>9} {'min':>8} {'max':>8}  goal")
            for name, (median, low, high) in figures.items():
                goal = next(g for key, g in goals.items() if name.startswith(key))
                verdict = "ok" if median < goal else "MISSED"
                print(
                    f"{name:<52} {median:>7.2f}ms {low:>6.2f}ms {high:>6.2f}ms"
                    f"  < {goal:g} ms {verdict}"
                )
            where = queries.jobs_where(queue=True, state=True)
            print("plan of list_jobs(queue, state):")
            print(
                explain(
                    app,
                    queries.list_jobs_query(app.tables, where),
                    {"queue": "q3", "state": "failed", "limit": 100},
                )
            )
            print("plan of queue_stats():")
            print(explain(app, queries.queue_stats_query(app.tables, False), {"name": None}))
    finally:
        anyio.run(migrate, 0)
        with app, app.sync_pool.connection() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(app.tables.schema_versions))
        print(f"dropped the tables of {prefix}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
