"""Upstream Chancy 0.26.0 from PyPI (`pip install chancy==0.26.0`, in its own virtualenv: that
distribution has the project's import name), through its public API: `Chancy` (no default
plugins, as the project's benchmarks run without plugins), `migrate`, `declare(Queue(...))`,
`push` / `push_many`, `Worker`.

Flavours are its executors: `async` (`AsyncExecutor`), `threaded` (`ThreadedExecutor`),
`process` (`ProcessExecutor`, default options). Queues are declared with `eager_polling=True` and
`polling_interval=1` (the project's default), else a drain waits 5 s after each batch. Its worker writes completions every
`send_outgoing_interval` (1 s by default), which push→done shows.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import _common

from chancy import Chancy, Job, Queue
from chancy.worker import Worker

PREFIX = "bench_"
JOBS = f"{PREFIX}jobs"
CAPS: dict[str, str | None] = {"async": None, "threaded": None, "process": None}
EXECUTORS = {
    "async": (Chancy.Executor.Async, "peerjobs.anoop"),
    "threaded": (Chancy.Executor.Threaded, "peerjobs.noop"),
    "process": (Chancy.Executor.Process, "peerjobs.noop"),
}
BUSY = f"SELECT EXISTS (SELECT 1 FROM {JOBS} WHERE state IN ('pending', 'running', 'retrying'))"
FINISHED = f"SELECT count(*) FROM {JOBS} WHERE state = 'succeeded'"
DONE = f"SELECT id FROM {JOBS} WHERE state = 'succeeded' AND id = ANY(%s::uuid[])"


def make_app(dsn: str) -> Chancy:
    return Chancy(dsn, prefix=PREFIX, no_default_plugins=True, max_connection_pool_size=10)


async def setup(app: Chancy, flavour: str, concurrency: int) -> str:
    executor, func = EXECUTORS[flavour]
    await app.migrate()
    # eager_polling: fetch again as soon as a job completes (off by default: the worker would
    # otherwise wait out polling_interval, 5 s by default, after each batch of `concurrency`).
    queue = Queue(
        "bench", concurrency=concurrency, executor=executor, eager_polling=True, polling_interval=1
    )
    await app.declare(queue, upsert=True)
    return func


async def enqueue(args: argparse.Namespace) -> dict[str, Any]:
    async with make_app(args.dsn) as app:
        func = await setup(app, "async", args.concurrency)
        jobs = [Job(func=func, queue="bench") for _ in range(args.jobs)]
        t0 = time.perf_counter()
        async for _ in app.push_many(jobs):
            pass
        t1 = time.perf_counter()
        for _ in range(args.one):
            await app.push(Job(func=func, queue="bench"))
        t2 = time.perf_counter()
    return {"batch_jobs_per_s": args.jobs / (t1 - t0), "one_jobs_per_s": args.one / (t2 - t1)}


async def push(args: argparse.Namespace) -> dict[str, Any]:
    async with make_app(args.dsn) as app:
        func = await setup(app, args.flavour, args.concurrency)
        async for _ in app.push_many([Job(func=func, queue="bench") for _ in range(args.jobs)]):
            pass
    return {"pushed": args.jobs}


async def run_worker(app: Chancy, signals: bool) -> None:
    async with Worker(app, register_signal_handlers=signals):
        await asyncio.Event().wait()


async def drain(args: argparse.Namespace) -> None:
    async with make_app(args.dsn) as app:
        await _common.timed_drain(args, lambda: run_worker(app, False), BUSY, FINISHED)


async def worker(args: argparse.Namespace) -> None:
    async with make_app(args.dsn) as app:
        await run_worker(app, True)


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    async with make_app(args.dsn) as app:
        await setup(app, "async", args.concurrency)

        async def push_one(i: int) -> str:
            job = Job(func="peerjobs.arecord", queue="bench", kwargs={"i": i})
            return str((await app.push(job)).identifier)

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
