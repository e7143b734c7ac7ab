"""Workload 3, steady state: a pusher at a fixed rate and a worker (in its own process, async
executor); p50/p95/p99 of push→started (database timestamps: `started_at - created_at`) and of
push→`wait_for_job` returns (the pusher's clock), with notifications on and off.

With notifications off the worker finds jobs by polling (the queue's `polling_interval`, 1 s by
default) and `wait_for_job` polls every `WAIT_INTERVAL` seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import anyio
import psycopg

from benchmarks._harness import JOBS, Context, Figure, drop_tables, make_app, percentile
from benchmarks._worker import executor_available, wait_all_finished, worker_available
from chancy import Chancy, Job, Queue

RATE = 50  # jobs per second
WAIT_INTERVAL = 0.1  # wait_for_job's poll interval (only a fallback with notifications)


def unavailable() -> str | None:
    return worker_available() or executor_available(Chancy.Executor.Async)


@contextlib.contextmanager
def worker_process(
    dsn: str, prefix: str, notifications: bool, outgoing: float | None = None
) -> Iterator[subprocess.Popen]:
    args = [sys.executable, "-m", "benchmarks._serve", dsn, prefix, "1" if notifications else "0"]
    if outgoing is not None:
        args.append(str(outgoing))
    proc = subprocess.Popen(args, env=os.environ.copy())
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def steady_once(
    dsn: str, notifications: bool, seconds: float, outgoing: float | None = None
) -> dict[str, list[float]]:
    app = make_app(dsn, notifications=notifications, max_connection_pool_size=30)
    job = Job(func=f"{JOBS}.anoop", queue="bench")
    every = 1 if notifications else 5  # wait_for_job on every n-th push (each holds a connection)
    waits: list[float] = []
    refs: list[str] = []
    try:
        async with app:
            await app.migrate()
            await app.declare(Queue("bench", concurrency=10, executor=Chancy.Executor.Async))
            with worker_process(dsn, app.prefix, notifications, outgoing):
                with anyio.fail_after(60):  # the worker is up once a first job has run
                    await app.wait_for_job(await app.push(job), interval=WAIT_INTERVAL)
                count = int(RATE * seconds)

                async def one(i: int) -> None:
                    start = time.perf_counter()
                    ref = await app.push(job)
                    refs.append(ref.identifier)
                    if i % every == 0:
                        done = await app.wait_for_job(ref, interval=WAIT_INTERVAL, timeout=60)
                        assert done is not None
                        assert done.state == done.State.SUCCEEDED
                        waits.append((time.perf_counter() - start) * 1000)

                async with anyio.create_task_group() as tg:
                    t0 = time.perf_counter()
                    for i in range(count):
                        delay = t0 + i / RATE - time.perf_counter()
                        if delay > 0:
                            await anyio.sleep(delay)
                        tg.start_soon(one, i)
                # Jobs whose wait was not measured may still be running: let them all finish.
                await wait_all_finished(dsn, app.prefix, timeout=60)
        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT extract(epoch FROM started_at - created_at) * 1000,"
                " extract(epoch FROM completed_at - created_at) * 1000"
                f' FROM "{app.prefix}jobs" WHERE id = ANY(%s::uuid[])',
                (refs,),
            ).fetchall()
        return {
            "started": [float(r[0]) for r in rows],
            "completed": [float(r[1]) for r in rows],
            "wait": waits,
        }
    finally:
        drop_tables(dsn, app.prefix)


def run(ctx: Context) -> list[Figure]:
    seconds = 5.0 if ctx.quick else 10.0
    figures = []
    modes = [
        ("notify on", True, None),
        ("notify off", False, None),
        # What the latency would be if the batcher wrote as soon as an update arrives.
        ("notify on, outgoing 0 s", True, 0.0),
    ]
    for mode, notifications, outgoing in modes:
        runs = [
            anyio.run(steady_once, ctx.dsn, notifications, seconds, outgoing)
            for _ in range(ctx.runs)
        ]
        for key, label, targets in (
            ("started", "push→started", {50: "<= 3", 99: "<= 10"}),
            ("wait", "push→wait_for_job returns", {50: "<= 10"}),
            ("completed", "push→job ended", {}),
        ):
            for p in (50, 95, 99):
                samples = [percentile(r[key], p) for r in runs]
                figures.append(
                    Figure(
                        "steady",
                        f"{label} p{p}, {mode}",
                        "ms",
                        samples,
                        higher_is_better=False,
                        target=targets.get(p, "") if mode == "notify on" else "",
                        params={
                            "rate_per_s": RATE,
                            "seconds": seconds,
                            "samples_per_run": [len(r[key]) for r in runs],
                            "executor": "async, concurrency 10, worker in its own process",
                            "wait_interval_s": WAIT_INTERVAL,
                            "send_outgoing_interval": outgoing,
                        },
                    )
                )
            ctx.log(f"  {mode} {label}: p50 {[round(percentile(r[key], 50), 2) for r in runs]}")
    return figures
