"""Workload 2, drain: 20,000 pre-pushed no-op jobs and one Worker in this process, on the async
and threaded executors at a few concurrency settings; jobs/s until every job is SUCCEEDED in the
database (timed from starting the worker, so its start-up is included)."""

from __future__ import annotations

import time

import anyio

from benchmarks._harness import JOBS, Context, Figure, drop_tables, make_app
from benchmarks._worker import (
    db_span,
    executor_available,
    running_worker,
    state_counts,
    wait_all_finished,
    worker_available,
)
from chancy import Chancy, Job, Queue

#: (label, executor, function, concurrency, target, anyio backend)
SETTINGS = [
    ("async", Chancy.Executor.Async, "anoop", 10, "", "asyncio"),
    ("async", Chancy.Executor.Async, "anoop", 100, ">= 10000", "asyncio"),
    ("threaded", Chancy.Executor.Threaded, "noop", 4, "", "asyncio"),
    ("threaded", Chancy.Executor.Threaded, "noop", 16, ">= 5000", "asyncio"),
    # Under trio the database is reached through the sync pool in threads: what that costs.
    ("async on trio", Chancy.Executor.Async, "anoop", 100, "", "trio"),
]


def unavailable() -> str | None:
    return worker_available() or executor_available(Chancy.Executor.Async)


async def drain_once(
    dsn: str,
    executor: str,
    func: str,
    concurrency: int,
    n: int,
    executor_options: dict | None = None,
    **worker_options: object,
) -> dict[str, float]:
    """Push `n` jobs, start a worker, time until all are finished; figures of that run."""
    app = make_app(dsn, max_connection_pool_size=10)
    try:
        async with app:
            await app.migrate()
            await app.declare(
                Queue(
                    "bench",
                    concurrency=concurrency,
                    executor=executor,
                    executor_options=executor_options or {},
                )
            )
            async for _ in app.push_many([Job(func=f"{JOBS}.{func}", queue="bench")] * n):
                pass
            t0 = time.perf_counter()
            async with running_worker(app, **worker_options):
                t1 = await wait_all_finished(dsn, app.prefix, timeout=max(120, n / 50))
        counts = state_counts(dsn, app.prefix)
        if counts.get("succeeded") != n:
            raise RuntimeError(f"not every job SUCCEEDED: {counts}")
        return {"jobs_per_s": n / (t1 - t0), "db_jobs_per_s": n / db_span(dsn, app.prefix)}
    finally:
        drop_tables(dsn, app.prefix)


def run(ctx: Context) -> list[Figure]:
    n = 20_000
    figures = []
    for label, executor, func, concurrency, target, backend in SETTINGS:
        results = [
            anyio.run(drain_once, ctx.dsn, executor, func, concurrency, n, backend=backend)
            for _ in range(ctx.runs)
        ]
        samples = [r["jobs_per_s"] for r in results]
        ctx.log(f"  {label} c={concurrency}: {[round(s) for s in samples]}")
        figures.append(
            Figure(
                "drain",
                f"{label}, concurrency {concurrency}",
                "jobs/s",
                samples,
                target=target,
                params={
                    "jobs": n,
                    "executor": executor,
                    "concurrency": concurrency,
                    "backend": backend,
                },
                extra={"db_span_jobs_per_s": [r["db_jobs_per_s"] for r in results]},
            )
        )
    return figures
