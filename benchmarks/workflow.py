"""Workload `workflow`: what workflows cost, against plain jobs doing the same work.

* drain overhead: 20,000 plain no-op jobs drained (async executor, concurrency 100) by an app
  without the workflow plugin and by one with it (its triggers on the jobs table), interleaved;
  the figure is the ratio with / without (1.00 = no cost to plain jobs).
* fan-out/fan-in: a workflow root -> 10,000 steps -> sink, against 10,002 plain jobs drained;
  per-step time of each, and their ratio.
* chain: 1,000 steps one after the other, against a chain of plain jobs where each job pushes
  the next (how a chain is written without workflows); per-step time of each, and the ratio.

Each run starts the worker on pushed work and stops the clock when the database says it is all
done. Run alone: ``python benchmarks/workflow.py [--runs N] [--quick]``.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import psycopg

if __name__ == "__main__":  # run alone: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._harness import Context, Figure, drop_tables, make_app
from benchmarks._worker import running_worker, wait_all_finished, worker_available
from chancy import Chancy, Job, Queue, QueuedJob
from chancy._sql import claim_query, read_job, update_jobs_query
from chancy.actors.batcher import batch_document
from chancy.plugins.workflow import Workflow, WorkflowPlugin, push_workflow

Q = "bench"
HERE = "benchmarks.workflow"
_APP: Chancy | None = None


async def anoop() -> None:
    """A no-op step."""


async def chain_next(left: int) -> None:
    """A plain-job chain: push the next link (the benchmark sets `_APP`)."""
    if left > 0:
        assert _APP is not None
        await _APP.push(Job(func=f"{HERE}.chain_next", queue=Q, kwargs={"left": left - 1}))


def unavailable() -> str | None:
    return worker_available()


async def _app(dsn: str, plugin: bool) -> Chancy:
    app = make_app(dsn, plugins=[WorkflowPlugin()] if plugin else [], max_connection_pool_size=10)
    await app.__aenter__()
    await app.migrate()
    await app.declare(Queue(Q, concurrency=100, executor=Chancy.Executor.Async))
    return app


async def _close(app: Chancy) -> None:
    try:
        await app.migrate(to_version=0)  # the plugin's functions too, not only its tables
    finally:
        await app.__aexit__(None, None, None)
        drop_tables(app.dsn, app.prefix)


def _workflow_done(dsn: str, prefix: str, workflow_id: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            f'SELECT state FROM "{prefix}workflows" WHERE id = %s', (workflow_id,)
        ).fetchone()
    return bool(row and row[0] in ("completed", "failed"))


async def _until_workflow_done(dsn: str, prefix: str, workflow_id: str, timeout: float) -> float:
    deadline = time.perf_counter() + timeout
    while not await anyio.to_thread.run_sync(_workflow_done, dsn, prefix, workflow_id):
        if time.perf_counter() > deadline:
            raise TimeoutError("workflow unfinished")
        await anyio.sleep(0.01)
    return time.perf_counter()


async def drain(dsn: str, plugin: bool, n: int) -> float:
    """Seconds to drain `n` plain jobs, with or without the workflow plugin's triggers."""
    app = await _app(dsn, plugin)
    try:
        async for _ in app.push_many([Job(func=f"{HERE}.anoop", queue=Q)] * n):
            pass
        t0 = time.perf_counter()
        async with running_worker(app):
            t1 = await wait_all_finished(dsn, app.prefix, timeout=max(120, n / 50))
        return t1 - t0
    finally:
        await _close(app)


async def fan(dsn: str, width: int, as_workflow: bool) -> float:
    """Seconds for root -> `width` steps -> sink as a workflow, or `width + 2` plain jobs."""
    app = await _app(dsn, True)
    try:
        job = Job(func=f"{HERE}.anoop", queue=Q)
        flow_id = ""
        if as_workflow:
            flow = Workflow("fan").add("root", job)
            middle = [f"m{i}" for i in range(width)]
            for name in middle:
                flow.add(name, job, ["root"])
            flow.add("sink", job, middle)
            flow_id = str(await push_workflow(app, flow))
        else:
            async for _ in app.push_many([job] * (width + 2)):
                pass
        t0 = time.perf_counter()
        async with running_worker(app):
            if as_workflow:
                t1 = await _until_workflow_done(dsn, app.prefix, flow_id, 300)
            else:
                t1 = await wait_all_finished(dsn, app.prefix, timeout=300)
        return t1 - t0
    finally:
        await _close(app)


async def chain(dsn: str, length: int, as_workflow: bool) -> float:
    """Seconds for `length` jobs one after the other: a workflow, or plain jobs each pushing
    the next."""
    import benchmarks.workflow as this  # the module the worker imports (not __main__)

    app = await _app(dsn, True)
    this._APP = app
    try:
        flow_id = ""
        if as_workflow:
            flow = Workflow("chain")
            for i in range(length):
                flow.add(f"s{i}", Job(func=f"{HERE}.anoop", queue=Q), [f"s{i - 1}"] if i else [])
            flow_id = str(await push_workflow(app, flow))
        else:
            await app.push(Job(func=f"{HERE}.chain_next", queue=Q, kwargs={"left": length - 1}))
        t0 = time.perf_counter()
        async with running_worker(app):
            if as_workflow:
                t1 = await _until_workflow_done(dsn, app.prefix, flow_id, 300)
            else:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    query = (
                        f"SELECT count(*) FILTER (WHERE state = 'succeeded'),"
                        f" count(*) FILTER (WHERE state = 'failed') FROM \"{app.prefix}jobs\""
                    )
                    deadline = time.perf_counter() + 300
                    while True:
                        row = conn.execute(query).fetchone()
                        if row and row[1]:
                            raise RuntimeError("a link of the plain chain failed")
                        if row and row[0] >= length:
                            break
                        if time.perf_counter() > deadline:
                            raise TimeoutError("plain chain unfinished")
                        await anyio.sleep(0.01)
                t1 = time.perf_counter()
        return t1 - t0
    finally:
        this._APP = None
        await _close(app)


async def statements(dsn: str, n: int, batch: int = 100) -> tuple[float, float]:
    """Database time of the worker's own statements for `n` plain jobs, claimed and written
    `batch` at a time, on tables without and with the plugin's triggers, interleaved batch by
    batch: (seconds without, seconds with)."""
    apps = [await _app(dsn, False), await _app(dsn, True)]
    try:
        for app in apps:
            async for _ in app.push_many([Job(func=f"{HERE}.anoop", queue=Q)] * n):
                pass
        spent = [0.0, 0.0]
        worker = SimpleNamespace(log=logging.getLogger("bench"))
        with psycopg.connect(dsn, autocommit=True) as conn:
            for _ in range(n // batch):
                for k, app in enumerate(apps):
                    t0 = time.perf_counter()
                    rows = conn.execute(
                        claim_query(app.tables), {"queue": Q, "up_to": batch, "taken_by": "b:1"}
                    ).fetchall()
                    ended = [
                        dataclasses.replace(
                            read_job(row),
                            state=QueuedJob.State.SUCCEEDED,
                            completed_at=datetime.now(UTC),
                        )
                        for row in rows
                    ]
                    conn.execute(
                        update_jobs_query(app.tables),
                        [batch_document(worker, ended), "b:1", app.tables.channel, True],  # type: ignore[arg-type]
                    )
                    spent[k] += time.perf_counter() - t0
        return spent[0], spent[1]
    finally:
        for app in apps:
            await _close(app)


def run(ctx: Context) -> list[Figure]:
    drain_n = 10_000 if ctx.quick else 20_000
    width = 10_000
    length = 1_000
    off: list[float] = []
    on: list[float] = []
    for run_ in range(ctx.runs):  # interleaved (ABBA), so drift on a shared machine hits both
        for plugin in (False, True) if run_ % 2 == 0 else (True, False):
            (on if plugin else off).append(anyio.run(drain, ctx.dsn, plugin, drain_n))
    ctx.log(f"  drain without plugin {[round(drain_n / s) for s in off]} jobs/s")
    ctx.log(f"  drain with plugin    {[round(drain_n / s) for s in on]} jobs/s")
    stmt_off: list[float] = []
    stmt_on: list[float] = []
    for _ in range(ctx.runs):
        a, b = anyio.run(statements, ctx.dsn, drain_n)
        stmt_off.append(a)
        stmt_on.append(b)
    ctx.log(
        f"  claim+write statements without / with: {[round(b / a, 3) for a, b in zip(stmt_off, stmt_on, strict=True)]}"
    )
    fan_plain: list[float] = []
    fan_wf: list[float] = []
    chain_plain: list[float] = []
    chain_wf: list[float] = []
    for run_ in range(ctx.runs):
        for as_workflow in (False, True) if run_ % 2 == 0 else (True, False):
            (fan_wf if as_workflow else fan_plain).append(
                anyio.run(fan, ctx.dsn, width, as_workflow) / (width + 2)
            )
            (chain_wf if as_workflow else chain_plain).append(
                anyio.run(chain, ctx.dsn, length, as_workflow) / length
            )
    ms = 1000.0

    def fig(name: str, samples: list[float], unit: str, **extra: Any) -> Figure:
        return Figure("workflow", name, unit, samples, higher_is_better=False, **extra)

    return [
        Figure(
            "workflow",
            f"plain drain of {drain_n:,} jobs, without plugin",
            "jobs/s",
            [drain_n / s for s in off],
        ),
        Figure(
            "workflow",
            f"plain drain of {drain_n:,} jobs, with the plugin's triggers",
            "jobs/s",
            [drain_n / s for s in on],
        ),
        fig(
            "plain drain time, with / without plugin",
            [a / b for a, b in zip(on, off, strict=True)],
            "ratio",
            target="<= 1.05",
        ),
        fig(
            "claim + write statements of plain jobs, per job, without plugin",
            [s / drain_n * ms for s in stmt_off],
            "ms",
        ),
        fig(
            "claim + write statements of plain jobs, per job, with the plugin's triggers",
            [s / drain_n * ms for s in stmt_on],
            "ms",
        ),
        fig(
            "claim + write statements, with / without plugin",
            [b / a for a, b in zip(stmt_off, stmt_on, strict=True)],
            "ratio",
            target="<= 1.05",
        ),
        fig(f"fan-out/fan-in {width:,}: plain jobs, per job", [s * ms for s in fan_plain], "ms"),
        fig(f"fan-out/fan-in {width:,}: workflow, per step", [s * ms for s in fan_wf], "ms"),
        fig(
            f"fan-out/fan-in {width:,}: workflow / plain",
            [a / b for a, b in zip(fan_wf, fan_plain, strict=True)],
            "ratio",
            target="<= 1.2",
        ),
        fig(
            f"chain {length:,}: plain jobs pushing the next, per job",
            [s * ms for s in chain_plain],
            "ms",
        ),
        fig(f"chain {length:,}: workflow, per step", [s * ms for s in chain_wf], "ms"),
        fig(
            f"chain {length:,}: workflow / plain",
            [a / b for a, b in zip(chain_wf, chain_plain, strict=True)],
            "ratio",
            target="<= 1.2",
        ),
    ]


def main() -> None:
    import argparse
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    dsn = os.environ.get("CHANCY_BENCH_DSN") or "postgresql://postgres@127.0.0.1:5432/postgres"
    ctx = Context(dsn=dsn, runs=args.runs, quick=args.quick, log=print)
    for figure in run(ctx):
        print(
            f"{figure.name}: median {statistics.median(figure.samples):.3f} {figure.unit}"
            f" (min {min(figure.samples):.3f}, max {max(figure.samples):.3f},"
            f" runs {len(figure.samples)})"
        )


if __name__ == "__main__":
    main()
