"""Workload 1, enqueue: push_many, push one at a time, and sync_push_many (jobs/s)."""

from __future__ import annotations

import anyio

from benchmarks._harness import JOBS, Context, Figure, Timer, drop_tables, make_app
from chancy import Job, Queue


def _jobs(n: int) -> list[Job]:
    return [Job(func=f"{JOBS}.noop", queue="bench") for _ in range(n)]


async def _push_many(ctx: Context, n: int) -> float:
    app = make_app(ctx.dsn)
    try:
        async with app:
            await app.migrate()
            await app.declare(Queue("bench"))
            jobs = _jobs(n)
            with Timer() as t:
                async for _ in app.push_many(jobs):
                    pass
        return n / t.seconds
    finally:
        drop_tables(ctx.dsn, app.prefix)


async def _push_one(ctx: Context, n: int) -> float:
    app = make_app(ctx.dsn)
    try:
        async with app:
            await app.migrate()
            await app.declare(Queue("bench"))
            jobs = _jobs(n)
            with Timer() as t:
                for job in jobs:
                    await app.push(job)
        return n / t.seconds
    finally:
        drop_tables(ctx.dsn, app.prefix)


def _sync_push_many(ctx: Context, n: int) -> float:
    app = make_app(ctx.dsn)

    async def setup() -> None:
        async with app:
            await app.migrate()
            await app.declare(Queue("bench"))

    try:
        anyio.run(setup)
        with app:
            jobs = _jobs(n)
            with Timer() as t:
                for _ in app.sync_push_many(jobs):
                    pass
        return n / t.seconds
    finally:
        drop_tables(ctx.dsn, app.prefix)


def run(ctx: Context) -> list[Figure]:
    many, one = 20_000, 2_000
    figures = []
    samples = [anyio.run(_push_many, ctx, many) for _ in range(ctx.runs)]
    figures.append(
        Figure("enqueue", "push_many", "jobs/s", samples, target=">= 50000", params={"jobs": many})
    )
    ctx.log(f"  push_many: {samples}")
    samples = [anyio.run(_push_one, ctx, one) for _ in range(ctx.runs)]
    figures.append(
        Figure(
            "enqueue",
            "push (one at a time)",
            "jobs/s",
            samples,
            target=">= 2500",
            params={"jobs": one},
        )
    )
    ctx.log(f"  push: {samples}")
    samples = [_sync_push_many(ctx, many) for _ in range(ctx.runs)]
    figures.append(Figure("enqueue", "sync_push_many", "jobs/s", samples, params={"jobs": many}))
    ctx.log(f"  sync_push_many: {samples}")
    return figures
