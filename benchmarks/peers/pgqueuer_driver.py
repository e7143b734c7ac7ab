"""PgQueuer 1.6.0 (`pip install 'pgqueuer[psycopg,asyncpg]==1.6.0'`), through its public API:
`Queries` (install, enqueue), `PgQueuer` + `@entrypoint` + `run()`.

`--variant psycopg`: `PsycopgDriver` on one async psycopg connection (the only psycopg driver
PgQueuer has); `--variant asyncpg`: `AsyncpgPoolDriver` on an asyncpg pool of up to 10
connections (what PgQueuer's docs advise for throughput). Concurrency N is
`max_concurrent_tasks=N` with `batch_size=N // 2`, the largest batch PgQueuer accepts for it.
Finished jobs leave the `pgqueuer` table for `pgqueuer_log` (status `successful`), in one
statement.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import _common
import peerjobs
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgPoolDriver, PsycopgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

CAPS: dict[str, str | None] = {
    "async": None,
    "threaded": "no threaded worker: entrypoints must be coroutines (a handler may wrap blocking"
    " code in asyncio.to_thread itself)",
    "process": "no process executor",
}
BUSY = "SELECT EXISTS (SELECT 1 FROM pgqueuer)"
FINISHED = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"
DONE = "SELECT job_id FROM pgqueuer_log WHERE status = 'successful' AND job_id = ANY(%s)"


async def driver(args: argparse.Namespace) -> Any:
    if args.variant == "asyncpg":
        import asyncpg

        pool = await asyncpg.create_pool(args.dsn, min_size=2, max_size=10)
        return AsyncpgPoolDriver(pool)
    import psycopg

    conn = await psycopg.AsyncConnection.connect(args.dsn, autocommit=True)
    return PsycopgDriver(conn)


async def install(args: argparse.Namespace) -> Queries:
    queries = Queries(await driver(args))
    await queries.install()
    return queries


async def enqueue(args: argparse.Namespace) -> dict[str, Any]:
    queries = await install(args)
    n, one = args.jobs, args.one
    t0 = asyncio.get_running_loop().time()
    await queries.enqueue(["anoop"] * n, [None] * n, [0] * n)
    t1 = asyncio.get_running_loop().time()
    for _ in range(one):
        await queries.enqueue("anoop", None)
    t2 = asyncio.get_running_loop().time()
    return {"batch_jobs_per_s": n / (t1 - t0), "one_jobs_per_s": one / (t2 - t1)}


async def push(args: argparse.Namespace) -> dict[str, Any]:
    queries = await install(args)
    n = args.jobs
    await queries.enqueue(["anoop"] * n, [None] * n, [0] * n)
    return {"pushed": n}


def app(drv: Any) -> PgQueuer:
    pgq = PgQueuer(drv)

    @pgq.entrypoint("anoop")
    async def anoop(job: Job) -> None:
        await peerjobs.anoop()

    @pgq.entrypoint("arecord")
    async def arecord(job: Job) -> None:
        await peerjobs.arecord(int(job.payload or b"0"))

    return pgq


async def run_worker(args: argparse.Namespace) -> None:
    pgq = app(await driver(args))
    await pgq.run(batch_size=max(1, args.concurrency // 2), max_concurrent_tasks=args.concurrency)


async def drain(args: argparse.Namespace) -> None:
    await _common.timed_drain(args, lambda: run_worker(args), BUSY, FINISHED)


async def worker(args: argparse.Namespace) -> None:
    await run_worker(args)


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    queries = await install(args)

    async def push_one(i: int) -> int:
        return int((await queries.enqueue("arecord", str(i).encode()))[0])

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
