"""Metrics on vs off: the async drain (as benchmarks/drain.py, async executor, concurrency 100)
with the worker's HTTP port and Prometheus metrics on (`Worker(http="127.0.0.1:0")`) and off,
alternating, several runs each; prints the medians and the difference.

    python benchmarks/metrics_overhead.py [--runs N] [--jobs N] [--backend asyncio|trio]
    python benchmarks/metrics_overhead.py --instructions [--jobs N]

Wall and CPU time on a shared 2-core machine vary by more than the few per cent measured here,
so `--instructions` counts instructions instead (valgrind's callgrind, repeatable whatever else
the machine does, up to how the jobs fall into batches):
drains of 0 and of N jobs in each mode, in fresh interpreters, interleaved, medians of 3: the
difference between the two sizes is the per-job cost (start-up cancels out; pushing is measured
alone and taken off), and on minus off is what metrics add per job. Needs `valgrind` (Debian package).

The server is `CHANCY_BENCH_DSN`, else an embedded one. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import statistics
import subprocess
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
        if counts.get("succeeded", 0) != n:
            raise RuntimeError(f"not every job SUCCEEDED: {counts}")
        return {"jobs_per_s": n / (t1 - t0), "cpu_us_per_job": 1e6 * (c1 - c0) / max(n, 1)}
    finally:
        drop_tables(dsn, app.prefix)


def _drain_once(dsn: str, mode: str, n: int) -> None:
    """One drain in this interpreter (run under callgrind by `instructions`)."""
    import prometheus_client  # noqa: F401  (imported in every mode: only the drain differs)

    import chancy.health  # noqa: F401

    if mode == "push":  # what `drain` does before the worker starts, to take off the total
        anyio.run(lambda: push_only(dsn, n))
        return
    options = {"http": "127.0.0.1:0"} if mode == "on" else {}
    anyio.run(lambda: drain(dsn, 100, n, **options))


async def push_only(dsn: str, n: int) -> None:
    app = make_app(dsn, max_connection_pool_size=10)
    try:
        async with app:
            await app.migrate()
            await app.declare(Queue("bench", concurrency=100, executor=Chancy.Executor.Async))
            async for _ in app.push_many([Job(func=f"{JOBS}.anoop", queue="bench")] * n):
                pass
    finally:
        drop_tables(dsn, app.prefix)


def _instructions(dsn: str, mode: str, n: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--once", mode, "--jobs", str(n), "--dsn", dsn],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    match = re.search(r"Collected\s*:\s*(\d+)", out)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out[-2000:]}")
    return int(match.group(1))


def instructions(dsn: str, n: int, reps: int) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    runs: dict[tuple[str, int], list[int]] = {}
    for _ in range(reps):  # interleaved, so drift hits every mode alike
        for mode in ("push", "off", "on"):
            for size in (0, n):
                runs.setdefault((mode, size), []).append(_instructions(dsn, mode, size))
    med = {key: statistics.median(values) for key, values in runs.items()}
    push = (med["push", n] - med["push", 0]) / n
    drain_ = {m: (med[m, n] - med[m, 0]) / n - push for m in ("off", "on")}
    print(f"pushing: {push:,.0f} instructions a job (taken off the drains below)")
    for mode in ("off", "on"):
        print(
            f"metrics {mode:3}: the drain {drain_[mode]:,.0f} instructions a job "
            f"(medians of {reps}; runs of {n:,} jobs: {[f'{v:,}' for v in runs[mode, n]]})"
        )
    extra = drain_["on"] - drain_["off"]
    print(
        f"metrics add {extra:,.0f} instructions a job ({100 * extra / drain_['off']:+.1f} %), "
        f"and {(med['on', 0] - med['off', 0]) / 1e6:,.1f} M once (the HTTP server, the registry)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--once", choices=["push", "off", "on"], help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.getLogger("chancy").setLevel(logging.WARNING)
    if args.once:
        _drain_once(args.dsn, args.once, args.jobs)
        return
    if args.instructions:
        with server_dsn() as (server, _origin), bench_database(server) as dsn:
            instructions(dsn, min(args.jobs, 5000), max(args.runs // 2, 3))
        return
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
