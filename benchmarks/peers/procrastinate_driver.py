"""procrastinate 3.10.0 (`pip install procrastinate==3.10.0`), through its public API: `App` on a
`PsycopgConnector` (a psycopg pool of up to 10 connections), `schema_manager.apply_schema_async`,
`@app.task`, `defer_async` / `batch_defer_async`, `run_worker_async`.

Flavours: `async` (a coroutine task, `concurrency=N`); `threaded` (a plain function: procrastinate
runs sync tasks in threads through asgiref's `sync_to_async`, up to `concurrency` at once). No
process executor. Jobs are kept (`delete_jobs="never"`, the default), with status `succeeded`.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import _common
import peerjobs
import procrastinate

CAPS: dict[str, str | None] = {
    "async": None,
    "threaded": None,
    "process": "no process executor (one worker process runs async tasks and sync ones in threads)",
}
BUSY = "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))"
FINISHED = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
DONE = "SELECT id FROM procrastinate_jobs WHERE status = 'succeeded' AND id = ANY(%s)"


def make_app(dsn: str) -> tuple[procrastinate.App, dict[str, Any]]:
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=dsn, min_size=2, max_size=10)
    )
    tasks = {
        "noop": app.task(name="noop", queue="bench")(peerjobs.noop),
        "anoop": app.task(name="anoop", queue="bench")(peerjobs.anoop),
        "arecord": app.task(name="arecord", queue="bench")(peerjobs.arecord),
    }
    return app, tasks


async def enqueue(args: argparse.Namespace) -> dict[str, Any]:
    app, tasks = make_app(args.dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        task = tasks["anoop"]
        t0 = time.perf_counter()
        await task.batch_defer_async(*({} for _ in range(args.jobs)))
        t1 = time.perf_counter()
        for _ in range(args.one):
            await task.defer_async()
        t2 = time.perf_counter()
    return {"batch_jobs_per_s": args.jobs / (t1 - t0), "one_jobs_per_s": args.one / (t2 - t1)}


async def push(args: argparse.Namespace) -> dict[str, Any]:
    app, tasks = make_app(args.dsn)
    name = "noop" if args.flavour == "threaded" else "anoop"
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await tasks[name].batch_defer_async(*({} for _ in range(args.jobs)))
    return {"pushed": args.jobs}


async def run_worker(app: procrastinate.App, concurrency: int) -> None:
    await app.run_worker_async(
        queues=["bench"],
        concurrency=concurrency,
        wait=True,
        install_signal_handlers=False,
        listen_notify=True,
    )


async def drain(args: argparse.Namespace) -> None:
    app, _ = make_app(args.dsn)
    async with app.open_async():
        await _common.timed_drain(args, lambda: run_worker(app, args.concurrency), BUSY, FINISHED)


async def worker(args: argparse.Namespace) -> None:
    app, _ = make_app(args.dsn)
    async with app.open_async():
        await run_worker(app, args.concurrency)


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    app, tasks = make_app(args.dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()

        async def push_one(i: int) -> int:
            return await tasks["arecord"].defer_async(i=i)

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
