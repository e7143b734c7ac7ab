"""Metrics on vs off: the async drain (as benchmarks/drain.py, async executor, concurrency 100)
with the worker's HTTP port and Prometheus metrics on (`Worker(http="127.0.0.1:0")`) and off,
alternating, several runs each; prints the medians and the difference.

    python benchmarks/metrics_overhead.py [--runs N] [--jobs N] [--backend asyncio|trio]

The server is `CHANCY_BENCH_DSN`, else an embedded one. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402

from benchmarks._harness import (  # noqa: E402
    JOBS,
    bench_database,
    drop_tables,
    make_app,
    server_dsn,
)
from benchmarks._worker import running_worker, state_counts, wait_all_finished  # noqa: E402
from chancy import Chancy, Job, Queue  # noqa: E402


async def drain(dsn: str, concurrency: int, n: int, **worker_options: object) -> dict:
    """benchmarks/drain.py's drain, also timing this process's CPU while the worker drains
    (steadier than wall time on a busy machine: the database's share is not in it)."""
    app = make_app(dsn, max_connection_pool_size=10)
    try:
        async with app:
            await app.migrate()
            await app.declare(
                Queue("bench", concurrency=concurrency, executor=Chancy.Executor.Async)
            )
            async for _ in app.push_many([Job(func=f"{JOBS}.anoop", queue="bench")] * n):
                pass
            t0, c0 = time.perf_counter(), time.process_time()
            async with running_worker(app, **worker_options):
                t1 = await wait_all_finished(dsn, app.prefix, timeout=max(120, n / 50))
                c1 = time.process_time()
        counts = state_counts(dsn, app.prefix)
        if counts.get("succeeded") != n:
            raise RuntimeError(f"not every job SUCCEEDED: {counts}")
        return {"jobs_per_s": n / (t1 - t0), "cpu_us_per_job": 1e6 * (c1 - c0) / n}
    finally:
        drop_tables(dsn, app.prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args()
    logging.getLogger("chancy").setLevel(logging.WARNING)
    results: dict[str, list[dict]] = {"off": [], "on": []}
    with server_dsn() as (server, _origin), bench_database(server) as dsn:
        for run in range(args.runs):
            # Alternate the order so drift (autovacuum, caches) hits both sides alike.
            order = ("off", "on") if run % 2 == 0 else ("on", "off")
            for mode in order:
                options = {"http": "127.0.0.1:0"} if mode == "on" else {}
                figures = anyio.run(
                    lambda options=options: drain(dsn, args.concurrency, args.jobs, **options),
                    backend=args.backend,
                )
                results[mode].append(figures)
                print(
                    f"run {run + 1} metrics {mode:3}: {figures['jobs_per_s']:,.0f} jobs/s, "
                    f"{figures['cpu_us_per_job']:.1f} us CPU/job",
                    flush=True,
                )
    for key, unit in (("jobs_per_s", "jobs/s"), ("cpu_us_per_job", "us CPU per job")):
        off = statistics.median(r[key] for r in results["off"])
        on = statistics.median(r[key] for r in results["on"])
        pairs = [b[key] / a[key] for a, b in zip(results["off"], results["on"], strict=True)]
        print(
            f"{unit}: median off {off:,.1f}, on {on:,.1f} ({100 * (on - off) / off:+.1f} %); "
            f"median of paired ratios on/off {statistics.median(pairs):.3f}"
        )


if __name__ == "__main__":
    main()
