"""The floor, run like a peer (project virtualenv): `benchmarks/floor.py`'s bare psycopg loops.

* `enqueue`: `floor.bare_inserts`, batches of 1,000 (`--jobs`) and one row at a time (`--one`).
* `push`: the project's Chancy pushes the jobs (as for its own drain).
* `drain`: `floor.drain`, claim 100 with SKIP LOCKED + one UPDATE marking them done, in a loop on
  one connection: what the database allows a queue with that claim statement; its process's RSS
  is a bare Python + psycopg.
No latency floor is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import _common  # noqa: E402
import chancy_driver  # noqa: E402

from benchmarks import floor  # noqa: E402
from benchmarks._harness import fresh_app  # noqa: E402
from chancy import Queue  # noqa: E402

CAPS: dict[str, str | None] = {"async": None, "threaded": None, "process": None}


def _enqueue(args: argparse.Namespace) -> dict[str, Any]:
    figures = {}
    for key, n, batch in (("batch_jobs_per_s", args.jobs, 1000), ("one_jobs_per_s", args.one, 1)):
        with fresh_app(args.dsn, Queue("bench")) as app:  # runs its own event loop
            figures[key] = floor.bare_inserts(args.dsn, app.prefix, n, batch)
    return figures


async def enqueue(args: argparse.Namespace) -> dict[str, Any]:
    return await asyncio.to_thread(_enqueue, args)


async def drain(args: argparse.Namespace) -> dict[str, Any]:
    count, seconds = floor.drain(args.dsn, chancy_driver.PREFIX, 100)
    return {"jobs_per_s": count / seconds, "seconds": seconds, "jobs": count}


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    return {"unsupported": "no latency floor is measured"}


if __name__ == "__main__":
    _common.run(
        _common.parse(),
        CAPS,
        {"enqueue": enqueue, "push": chancy_driver.push, "drain": drain, "latency": latency},
    )
