"""The dashboard on a big table: its overview and filtered jobs pages (HTML and JSON), with
2,000,000 finished + 40,000 runnable rows, and the plans of the statements behind them.

Standalone, like operator_queries.py (whose `fill` it uses): a scratch prefix in the database
of `--dsn` (default CHANCY_BENCH_DSN), dropped afterwards. The app is called in process over
ASGI (httpx), so a figure is the server's time plus a few hundred microseconds of client::

    python benchmarks/dashboard.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

Goal: every page and API call < 200 ms, and no sequential scan of the jobs table in any plan.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from operator_queries import QUEUES, fill
from psycopg import sql

from chancy import Chancy, Queue
from chancy import _sql as queries
from chancy.dashboard import create_app
from chancy.plugins import default_plugins
from chancy.plugins.metrics import Metrics

TOKEN = "bench-" + secrets.token_hex(16)
GOAL_MS = 200.0


async def timed(client: httpx.AsyncClient, path: str, runs: int) -> tuple[float, float, int]:
    answer = await client.get(path)  # warm: caches, prepared statements, templates
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = await client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200
    return statistics.median(samples), max(samples), len(answer.content)


def plan(app: Chancy, query: sql.Composed, params: dict) -> tuple[list[str], str]:
    """The scans of `query`'s plan (node type and relation) and the plan as text."""
    with app.sync_pool.connection() as conn:
        [(doc,)] = conn.execute(
            sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + query, params
        ).fetchall()
        text = conn.execute(sql.SQL("EXPLAIN (ANALYZE, COSTS OFF) ") + query, params).fetchall()
    nodes: list[str] = []

    def walk(node: dict) -> None:
        if "Scan" in node["Node Type"]:
            nodes.append(f"{node['Node Type']} on {node.get('Relation Name', '?')}")
        for child in node.get("Plans", []):
            walk(child)

    walk((doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"])
    return nodes, "\n".join("    " + row[0] for row in text)


async def measure(app: Chancy, runs: int) -> dict[str, tuple[float, float, int]]:
    dashboard = create_app(app, token=TOKEN)
    transport = httpx.ASGITransport(app=dashboard)
    async with (
        app,
        httpx.AsyncClient(
            transport=transport,
            base_url="http://bench",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as client,
    ):
        page = (await client.get("/api/v1/jobs?queue=q3&state=failed&limit=50")).json()
        after = page["next"]
        paths = {
            "overview page (HTML)": "/",
            "GET /api/v1/overview": "/api/v1/overview",
            "jobs page, queue=q3 state=failed (HTML)": "/jobs?queue=q3&state=failed",
            "GET /api/v1/jobs?queue=q3&state=failed": "/api/v1/jobs?queue=q3&state=failed",
            "... the next page (after=)": f"/api/v1/jobs?queue=q3&state=failed&after={after}",
            "GET /api/v1/jobs?state=failed": "/api/v1/jobs?state=failed",
            "GET /api/v1/jobs (no filter)": "/api/v1/jobs",
            "GET /api/v1/jobs?queue=q3&state=failed&error=boom": (
                "/api/v1/jobs?queue=q3&state=failed&error=boom"
            ),
            "GET /api/v1/jobs?state=pending&queue=q5": "/api/v1/jobs?state=pending&queue=q5",
            "queues page (HTML)": "/queues",
            "queue page q3 (HTML)": "/queues/q3",
            "workers page (HTML)": "/workers",
        }
        return {name: await timed(client, path, runs) for name, path in paths.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("CHANCY_BENCH_DSN"))
    parser.add_argument("--finished", type=int, default=2_000_000)
    parser.add_argument("--runnable", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn or set CHANCY_BENCH_DSN")
    prefix = f"bench_dash_{secrets.token_hex(3)}_"
    app = Chancy(args.dsn, prefix=prefix, plugins=[*default_plugins(), Metrics()])
    missed = 0
    try:
        with app:
            app.sync_migrate()
            for i in range(QUEUES):
                app.sync_declare(Queue(f"q{i}", executor=Chancy.Executor.Async))
            seconds = fill(app, args.finished, args.runnable)
            print(
                f"filled {args.finished:,} finished + {args.runnable:,} runnable rows"
                f" ({QUEUES} queues) in {seconds:.1f} s, prefix {prefix}"
            )
        figures = asyncio.run(measure(app, args.runs))
        print(f"{'request':<52} {'median':>9} {'max':>9} {'bytes':>8}  goal")
        for name, (median, high, size) in figures.items():
            verdict = "ok" if median < GOAL_MS else "MISSED"
            missed += verdict != "ok"
            print(
                f"{name:<52} {median:>7.1f}ms {high:>7.1f}ms {size:>8,}  < {GOAL_MS:g} ms {verdict}"
            )
        with app:
            where = queries.jobs_where
            statements = {
                "list_jobs(queue, state)": (
                    queries.list_jobs_query(app.tables, where(queue=True, state=True)),
                    {"queue": "q3", "state": "failed", "limit": 51},
                ),
                "list_jobs(state)": (
                    queries.list_jobs_query(app.tables, where(state=True)),
                    {"state": "failed", "limit": 51},
                ),
                "list_jobs()": (queries.list_jobs_query(app.tables, where()), {"limit": 51}),
                "list_jobs(queue, state, error)": (
                    queries.list_jobs_query(app.tables, where(queue=True, state=True, error=True)),
                    {"queue": "q3", "state": "failed", "error": "boom", "limit": 51},
                ),
                "recent failures": (
                    queries.recent_failures_query(app.tables),
                    {"queues": [f"q{i}" for i in range(QUEUES)], "limit": 10},
                ),
                "running jobs": (queries.running_jobs_query(app.tables), {"limit": 1000}),
                "queue_stats()": (queries.queue_stats_query(app.tables, False), {"name": None}),
            }
            jobs_table = app.prefix + "jobs"
            for name, (query, params) in statements.items():
                scans, text = plan(app, query, params)
                seq = [s for s in scans if s == f"Seq Scan on {jobs_table}"]
                missed += bool(seq)
                print(f"plan of {name}: {'SEQUENTIAL SCAN' if seq else 'no sequential scan'}")
                print(text)
    finally:
        with app, app.sync_pool.connection() as conn:
            rows = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " AND starts_with(tablename, %s)",
                (prefix,),
            ).fetchall()
            for (table,) in rows:
                conn.execute(sql.SQL("DROP TABLE {} CASCADE").format(sql.Identifier(table)))
        print(f"dropped the tables of {prefix}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
