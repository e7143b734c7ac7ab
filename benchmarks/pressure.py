"""Chancy under pressure: NOTIFY's commit lock, claims behind a million future jobs, and the
connections one supervisor holds.

Standalone: it works under a scratch prefix in the database of `--dsn` (default
CHANCY_BENCH_DSN), prints its figures and drops its tables afterwards::

    python benchmarks/pressure.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

1. **Producers.** 16 concurrent producers push one job per transaction for `--seconds`, with
   notifications on, then off: commits per second, and how many producers were waiting on a
   heavyweight lock at each sample (NOTIFY takes one global lock at commit).
2. **Claims behind future jobs.** 1,000,000 jobs scheduled in the future at the highest
   priority, plus 10,000 runnable ones: the time of one claim of 1 and of 100 jobs (the claim
   is rolled back each time). Goal: <= 1 ms for one job.
3. **Connections.** One worker serving 8 queues under load: the most connections it held at
   once (sampled from pg_stat_activity by its application_name), against its pool size + 1
   (the listener).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio
import psycopg

from chancy import Chancy, Job, Queue
from chancy import _sql as queries
from chancy.worker import Worker


def _drop(dsn: str, prefix: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("jobs", "queues", "workers", "leader", "rate_limits", "schema_versions"):
            conn.execute(f'DROP TABLE IF EXISTS "{prefix}{table}" CASCADE')


async def producers(dsn: str, seconds: float, notifications: bool) -> dict[str, float]:
    prefix = f"bp{secrets.token_hex(3)}_"
    app = Chancy(dsn, prefix=prefix, plugins=[], notifications=notifications,
                 max_connection_pool_size=17)  # fmt: skip
    try:
        async with app:
            await app.migrate()
            await app.declare(Queue("p"))
            pushed = 0
            waits: list[int] = []
            stop = anyio.current_time() + seconds

            async def produce() -> None:
                nonlocal pushed
                while anyio.current_time() < stop:
                    await app.push(Job(func="bench.noop", queue="p"))
                    pushed += 1

            async def sample() -> None:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    while anyio.current_time() < stop:
                        cur = await conn.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type ="
                            " 'Lock' AND application_name = 'chancy' AND datname ="
                            " current_database()"
                        )
                        row = await cur.fetchone()
                        waits.append(int(row[0]) if row else 0)
                        await anyio.sleep(0.01)

            started = anyio.current_time()
            async with anyio.create_task_group() as tg:
                for _ in range(16):
                    tg.start_soon(produce)
                tg.start_soon(sample)
            elapsed = anyio.current_time() - started
    finally:
        _drop(dsn, prefix)
    return {
        "commits_per_s": pushed / elapsed,
        "lock_waiters_mean": statistics.fmean(waits) if waits else 0.0,
        "lock_waiters_max": float(max(waits, default=0)),
    }


async def claims(dsn: str, future: int, runnable: int, runs: int) -> dict[str, float]:
    prefix = f"bc{secrets.token_hex(3)}_"
    app = Chancy(dsn, prefix=prefix, plugins=[])
    try:
        async with app:
            await app.migrate()
            await app.declare(Queue("c"))
            async with app.db.connection() as conn:
                began = time.perf_counter()
                for count, when, priority in ((future, "1 day", 100), (runnable, "-1 minute", 0)):
                    await conn.execute(
                        app.tables.q(
                            "INSERT INTO {jobs} (id, queue, func, priority, scheduled_at)"
                            " SELECT gen_random_uuid(), 'c', 'bench.noop', %s,"
                            " now() + %s::interval FROM generate_series(1, %s)"
                        ),
                        (priority, when, count),
                    )
                await conn.execute(app.tables.q("ANALYZE {jobs}"))
                filled = time.perf_counter() - began
            figures: dict[str, float] = {"fill_s": filled}
            query = queries.claim_query(app.tables)
            for up_to in (1, 100):
                times = []
                for _ in range(runs):
                    async with (
                        app.pool.connection() as raw,
                        raw.transaction(force_rollback=True),
                    ):
                        t = time.perf_counter()
                        cur = await raw.execute(
                            query, {"queue": "c", "up_to": up_to, "taken_by": "bench:1"}
                        )
                        got = await cur.fetchall()
                        times.append((time.perf_counter() - t) * 1000)
                        assert len(got) == up_to
                figures[f"claim_{up_to}_ms"] = statistics.median(times)
    finally:
        _drop(dsn, prefix)
    return figures


async def connections(dsn: str, seconds: float) -> dict[str, float]:
    prefix = f"bn{secrets.token_hex(3)}_"
    app = Chancy(dsn, prefix=prefix, plugins=[], max_connection_pool_size=10)
    names = [f"n{i}" for i in range(8)]
    try:
        async with app:
            await app.migrate()
            for name in names:
                await app.declare(Queue(name, executor=Chancy.Executor.Async, concurrency=10))
            worker = Worker(app, worker_id=f"bench-{prefix}", register_signal_handlers=False)
            held: list[int] = []
            async with worker:
                stop = anyio.current_time() + seconds

                async def feed() -> None:
                    while anyio.current_time() < stop:
                        batch = [Job(func="wjobs.async_noop", queue=n) for n in names] * 25
                        async for _ in app.push_many(batch):
                            pass
                        await anyio.sleep(0.05)

                async def sample() -> None:
                    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
                        while anyio.current_time() < stop:
                            cur = await c.execute(
                                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                (f"chancy-{worker.worker_id}",),
                            )
                            row = await cur.fetchone()
                            held.append(int(row[0]) if row else 0)
                            await anyio.sleep(0.05)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(feed)
                    tg.start_soon(sample)
    finally:
        _drop(dsn, prefix)
    return {
        "max_connections": float(max(held, default=0)),
        "mean_connections": statistics.fmean(held) if held else 0.0,
        "pool_size_plus_listener": 11.0,
    }


async def main(args: argparse.Namespace) -> None:
    dsn = args.dsn
    print("1. 16 producers, one job per transaction")
    for notify in (True, False):
        fig = await producers(dsn, args.seconds, notify)
        print(
            f"   notifications {'on ' if notify else 'off'}: {fig['commits_per_s']:8.0f} commits/s,"
            f" producers waiting on a lock: mean {fig['lock_waiters_mean']:.1f},"
            f" max {fig['lock_waiters_max']:.0f}"
        )
    print(f"2. claims behind {args.future:,} future jobs at the top priority + 10,000 runnable")
    fig = await claims(dsn, args.future, 10_000, args.runs)
    print(
        f"   filled in {fig['fill_s']:.1f} s; claim 1: {fig['claim_1_ms']:.2f} ms,"
        f" claim 100: {fig['claim_100_ms']:.2f} ms (median of {args.runs}; goal <= 1 ms)"
    )
    print("3. connections held by one worker serving 8 queues under load")
    fig = await connections(dsn, args.seconds)
    print(
        f"   max {fig['max_connections']:.0f}, mean {fig['mean_connections']:.1f}"
        f" (pool size 10 + 1 listener = {fig['pool_size_plus_listener']:.0f})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("CHANCY_BENCH_DSN"))
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--future", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    arguments = parser.parse_args()
    if not arguments.dsn:
        parser.error("give --dsn or set CHANCY_BENCH_DSN")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # wjobs
    anyio.run(main, arguments)
