"""Workload 4, scale: the claim (`fetch_query`, the statement workers run) for 1 and 100 jobs
with 2,000,000 finished rows and 40,000 runnable rows in the table, loaded with COPY.

Each claim runs in a transaction that is rolled back, so every claim sees the same data.
"""

from __future__ import annotations

import time
import uuid

import psycopg
from psycopg import sql

from benchmarks._harness import JOBS, Context, Figure, Timer, fresh_app, percentile
from chancy import Queue, _sql

_COLUMNS = (
    "id, queue, func, kwargs, state, attempts, scheduled_at, created_at, started_at, completed_at"
)


def _uuid7_text(ms: int, seq: int) -> str:
    """A version-7 UUID for millisecond `ms`, made unique by `seq` (ids keep push order)."""
    value = (ms << 80) | (0x7 << 76) | ((seq >> 62 & 0xFFF) << 64) | (0b10 << 62)
    value |= seq & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def load(dsn: str, prefix: str, finished: int, runnable: int, log) -> float:
    """COPY `finished` done rows then `runnable` pending rows into the jobs table; seconds."""
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - 30 * 24 * 3600 * 1000
    func = f"{JOBS}.noop"
    with psycopg.connect(dsn, autocommit=True) as conn, Timer() as t:
        with conn.cursor() as cur:
            copy_sql = f'COPY "{prefix}jobs" ({_COLUMNS}) FROM STDIN'
            with cur.copy(copy_sql) as copy:
                chunk: list[str] = []
                for i in range(finished):
                    ms = start_ms + i // 4
                    state = "succeeded" if i % 20 else "failed"
                    ts = "2026-01-01 00:00:00+00"
                    chunk.append(
                        f"{_uuid7_text(ms, i)}\tbench\t{func}\t{{}}\t{state}\t1\t{ts}\t{ts}\t{ts}\t{ts}\n"
                    )
                    if len(chunk) >= 50_000:
                        copy.write("".join(chunk))
                        chunk.clear()
                for j in range(runnable):
                    ms = now_ms - 60_000 + j // 4
                    chunk.append(
                        f"{_uuid7_text(ms, finished + j)}\tbench\t{func}\t{{}}\tpending\t0"
                        "\t2026-01-01 00:00:00+00\t2026-01-01 00:00:00+00\t\\N\t\\N\n"
                    )
                    if len(chunk) >= 50_000:
                        copy.write("".join(chunk))
                        chunk.clear()
                if chunk:
                    copy.write("".join(chunk))
        conn.execute(f'VACUUM ANALYZE "{prefix}jobs"')
    log(f"  loaded {finished} finished + {runnable} runnable rows in {t.seconds:.1f} s")
    return t.seconds


def claim_times(dsn: str, query, up_to: int, runs: int) -> tuple[list[float], str, float]:
    """Milliseconds per claim (round trip), the plan, and the server's execution time (ms)."""
    params = {"queue": "bench", "up_to": up_to, "taken_by": "bench"}
    times = []
    with psycopg.connect(dsn) as conn:  # not autocommit: every claim is rolled back
        for _ in range(3):  # warm the cache and the prepared plan
            conn.execute(query, params).fetchall()
            conn.rollback()
        for _ in range(runs):
            start = time.perf_counter()
            rows = conn.execute(query, params).fetchall()
            times.append((time.perf_counter() - start) * 1000)
            assert len(rows) == up_to, len(rows)
            conn.rollback()
        explain = conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + query, params).fetchall()
        conn.rollback()
    plan = "\n".join(r[0] for r in explain)
    exec_ms = next(
        (
            float(line.split(":")[1].split()[0])
            for line in plan.splitlines()
            if line.strip().startswith("Execution Time")
        ),
        float("nan"),
    )
    return times, plan, exec_ms


def run(ctx: Context) -> list[Figure]:
    finished = 200_000 if ctx.quick else 2_000_000
    runnable = 40_000
    claims = 50
    figures = []
    with fresh_app(ctx.dsn, Queue("bench")) as app:
        load_s = load(ctx.dsn, app.prefix, finished, runnable, ctx.log)
        # The claim the worker runs (`claim_query` where it exists, else `fetch_query`).
        claim = getattr(_sql, "claim_query", None) or _sql.fetch_query
        query = claim(app.tables)
        for up_to, target in ((1, "<= 1"), (100, "<= 3")):
            per_run = []
            all_times: list[float] = []
            plan, exec_ms = "", 0.0
            for _ in range(ctx.runs):
                times, plan, exec_ms = claim_times(ctx.dsn, query, up_to, claims)
                per_run.append(percentile(times, 50))
                all_times += times
            ctx.log(f"  claim {up_to}: medians {per_run} ms, server {exec_ms} ms")
            figures.append(
                Figure(
                    "scale",
                    f"claim {up_to} job{'s' if up_to > 1 else ''}",
                    "ms",
                    per_run,
                    higher_is_better=False,
                    target=target,
                    params={
                        "query": f"chancy._sql.{claim.__name__}",
                        "finished_rows": finished,
                        "runnable_rows": runnable,
                        "claims_per_run": claims,
                        "load_seconds": round(load_s, 1),
                    },
                    extra={
                        "p95_ms": percentile(all_times, 95),
                        "p99_ms": percentile(all_times, 99),
                        "server_execution_ms": exec_ms,
                        "plan": plan,
                    },
                )
            )
    return figures
