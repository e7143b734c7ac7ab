"""Where the time of a drain goes: one drain under pyinstrument (else cProfile).

    python benchmarks/profile_drain.py [--executor async|threaded|process] [--concurrency N]
                                       [--jobs N] [--html FILE]

Uses `CHANCY_BENCH_DSN` or the embedded server, in a database of its own. The profile covers this
process only (the worker's event loop and threads); with the process executor the children are
not profiled, their share shows up as time waiting on the pipes.
"""

from __future__ import annotations

import argparse
import sys
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor", choices=sorted(EXECUTORS), default="async")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--html", type=Path, default=None, help="also write pyinstrument's HTML")
    args = parser.parse_args()
    executor, func = EXECUTORS[args.executor]
    import logging

    logging.getLogger("chancy").setLevel(logging.WARNING)
    logging.getLogger("chancy").addHandler(logging.StreamHandler())
    with server_dsn() as (server, _), bench_database(server) as dsn:
        try:
            from pyinstrument import Profiler
        except ImportError:
            Profiler = None  # noqa: N806
        if Profiler is None:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            figures = anyio.run(drain_once, dsn, executor, func, args.concurrency, args.jobs)
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
        else:
            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
            figures = anyio.run(drain_once, dsn, executor, func, args.concurrency, args.jobs)
            profiler.stop()
            print(profiler.output_text(unicode=True, show_all=False))
            if args.html:
                args.html.write_text(profiler.output_html())
    print({k: round(v) for k, v in figures.items()})


if __name__ == "__main__":
    main()
