"""Where the time of a drain goes.

    python benchmarks/profile_drain.py [--executor async|threaded|process] [--concurrency N]
                                       [--jobs N] [--options JSON] [--html FILE] [--no-profile]

Drains `--jobs` no-op jobs with one worker in this process (as `benchmarks.drain` does), in a
database of its own (`CHANCY_BENCH_DSN` or the embedded server), and reports:

* wall-clock timers around the parts (this wraps methods of the running code, it changes
  nothing in it): the claim (`Worker.fetch_jobs`, SQL round trip included), the batcher's
  writes (`Batcher.write`), `ChildPool.run_job` (a job in a child, pipe both ways), and the
  pipe alone (`FrameStream.send`/`receive`); each as total seconds, calls and share of the
  drain's wall time (parts overlap: they run concurrently);
* a pyinstrument profile of this process (else cProfile). Children are not profiled: their
  time shows up as waiting on the pipe.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402

from benchmarks._harness import bench_database, server_dsn  # noqa: E402
from benchmarks.drain import drain_once  # noqa: E402
from chancy import Chancy  # noqa: E402

EXECUTORS = {
    "async": (Chancy.Executor.Async, "anoop"),
    "threaded": (Chancy.Executor.Threaded, "noop"),
    "process": (Chancy.Executor.Process, "noop"),
}

#: label -> (module, class, method)
TIMED = {
    "claim (Worker.fetch_jobs, SQL included)": ("chancy.worker", "Worker", "fetch_jobs"),
    "completions (Batcher.write, SQL included)": ("chancy.actors.batcher", "Batcher", "write"),
    "executor bookkeeping (job_finished)": ("chancy.executors.base", "Executor", "job_finished"),
    "job in a child (ChildPool.run_job)": ("chancy.supervisor._pool", "ChildPool", "run_job"),
    "pipe: send a frame": ("chancy.wire._frames", "FrameStream", "send"),
    "pipe: receive a frame": ("chancy.wire._frames", "FrameStream", "receive"),
    "threaded: jobs batched per thread hand-off (_run_batch)": (
        "chancy.executors.thread",
        "ThreadedExecutor",
        "_run_batch",
    ),
    "async/threaded: one job per hand-off (_run_one)": (
        "chancy.executors.asyncex",
        "AsyncExecutor",
        "_run_one",
    ),
}


def install_timers() -> dict[str, list[float]]:
    """Wrap the TIMED coroutine methods with wall-clock timers; {label: [seconds, calls]}."""
    import importlib

    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for label, (module_name, cls_name, method) in TIMED.items():
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError):
            continue
        original = getattr(cls, method)

        def wrap(original=original, label=label):
            @functools.wraps(original)
            async def timed(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    entry = totals[label]
                    entry[0] += time.perf_counter() - start
                    entry[1] += 1

            return timed

        setattr(cls, method, wrap())
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor", choices=sorted(EXECUTORS), default="async")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--options", type=json.loads, default={}, help="executor options (JSON)")
    parser.add_argument("--html", type=Path, default=None, help="also write pyinstrument's HTML")
    parser.add_argument("--no-profile", action="store_true", help="timers only")
    args = parser.parse_args()
    executor, func = EXECUTORS[args.executor]
    import logging

    logging.getLogger("chancy").setLevel(logging.WARNING)
    logging.getLogger("chancy").addHandler(logging.StreamHandler())
    totals = install_timers()
    drain = functools.partial(
        drain_once,
        executor=executor,
        func=func,
        concurrency=args.concurrency,
        n=args.jobs,
        executor_options=args.options,
    )
    with server_dsn() as (server, _), bench_database(server) as dsn:
        try:
            from pyinstrument import Profiler
        except ImportError:
            Profiler = None
        start = time.perf_counter()
        if args.no_profile:
            figures = anyio.run(drain, dsn)
        elif Profiler is None:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            figures = anyio.run(drain, dsn)
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
        else:
            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
            figures = anyio.run(drain, dsn)
            profiler.stop()
            print(profiler.output_text(unicode=True, show_all=False))
            if args.html:
                args.html.write_text(profiler.output_html())
        elapsed = time.perf_counter() - start
    wall = args.jobs / figures["jobs_per_s"]
    print(f"{args.executor}, concurrency {args.concurrency}, {args.jobs} jobs, {args.options}")
    print(
        f"drain: {figures['jobs_per_s']:,.0f} jobs/s, {wall:.2f} s (whole script {elapsed:.1f} s)"
    )
    print(f"{'part':<45} {'seconds':>8} {'calls':>7} {'ms/call':>8} {'% of drain':>10}")
    for label, (seconds, calls) in totals.items():
        per = seconds / calls * 1000 if calls else 0.0
        print(f"{label:<45} {seconds:8.2f} {calls:7d} {per:8.3f} {seconds / wall * 100:9.0f}%")


if __name__ == "__main__":
    main()
