"""This project's Chancy, run with the project's virtualenv (the repository's root on the
PYTHONPATH), the same way as the peers' drivers. Built from the project's own benchmark code:
`benchmarks.enqueue` for the enqueue figures, `benchmarks._harness.make_app` (no plugins) and
`benchmarks._worker.running_worker` for the worker.

Flavours are its executors: `async`, `threaded`, `process` (2 supervised children, default
options).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import _common  # noqa: E402

from benchmarks import enqueue as project_enqueue  # noqa: E402
from benchmarks._harness import Context, make_app  # noqa: E402
from benchmarks._worker import running_worker  # noqa: E402
from chancy import Chancy, Job, Queue  # noqa: E402

PREFIX = "bench_"
JOBS = f'"{PREFIX}jobs"'
CAPS: dict[str, str | None] = {"async": None, "threaded": None, "process": None}
EXECUTORS = {
    "async": (Chancy.Executor.Async, "peerjobs.anoop"),
    "threaded": (Chancy.Executor.Threaded, "peerjobs.noop"),
    "process": (Chancy.Executor.Process, "peerjobs.noop"),
}
BUSY = f"SELECT EXISTS (SELECT 1 FROM {JOBS} WHERE state IN ('pending', 'running', 'retrying'))"
FINISHED = f"SELECT count(*) FROM {JOBS} WHERE state = 'succeeded'"
DONE = f"SELECT id FROM {JOBS} WHERE state = 'succeeded' AND id = ANY(%s::uuid[])"


def app_for(dsn: str) -> Chancy:
    return make_app(dsn, prefix=PREFIX, max_connection_pool_size=10)


async def setup(app: Chancy, flavour: str, concurrency: int) -> str:
    executor, func = EXECUTORS[flavour]
    await app.migrate()
    await app.declare(Queue("bench", concurrency=concurrency, executor=executor), upsert=True)
    return func


async def enqueue(args: argparse.Namespace) -> dict[str, Any]:
    # benchmarks/enqueue.py, one run each: push_many (batches of 1,000), push one at a time;
    # each in tables of its own, dropped afterwards.
    ctx = Context(dsn=args.dsn, runs=1, quick=False, log=_common.log)
    return {
        "batch_jobs_per_s": await project_enqueue._push_many(ctx, args.jobs),
        "one_jobs_per_s": await project_enqueue._push_one(ctx, args.one),
    }


async def push(args: argparse.Namespace) -> dict[str, Any]:
    async with app_for(args.dsn) as app:
        func = await setup(app, args.flavour, args.concurrency)
        async for _ in app.push_many([Job(func=func, queue="bench")] * args.jobs):
            pass
    return {"pushed": args.jobs}


async def run_worker(app: Chancy) -> None:
    async with running_worker(app):
        await asyncio.Event().wait()


async def drain(args: argparse.Namespace) -> None:
    async with app_for(args.dsn) as app:
        await _common.timed_drain(args, lambda: run_worker(app), BUSY, FINISHED)


async def worker(args: argparse.Namespace) -> None:
    logging.getLogger("chancy").setLevel(logging.WARNING)
    async with app_for(args.dsn) as app:
        task = asyncio.ensure_future(run_worker(app))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        task.cancel()


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    async with app_for(args.dsn) as app:
        await setup(app, "async", args.concurrency)

        async def push_one(i: int) -> str:
            job = Job(func="peerjobs.arecord", queue="bench", kwargs={"i": i})
            return (await app.push(job)).identifier

        return await _common.latency(__file__, args, push_one, DONE, BUSY)


if __name__ == "__main__":
    _common.run(
        _common.parse(),
        CAPS,
        {
            "enqueue": enqueue,
            "push": push,
            "drain": drain,
            "worker": worker,
            "latency": latency,
        },
    )
