"""Workload 2 on the process executor: 20,000 pre-pushed no-op jobs drained by a worker whose
queue runs them in 2 supervised child processes; jobs/s until every job is SUCCEEDED.

Two ways: the worker in this process (like the other drains), and the worker in a process of
its own (`benchmarks._serve`, the supervisor), where the supervisor's and the children's RSS
are sampled with psutil at rest and through the drain.
"""

from __future__ import annotations

import contextlib
import time

import anyio
import psutil

from benchmarks._harness import JOBS, Context, Figure, drop_tables, make_app
from benchmarks._worker import (
    executor_available,
    state_counts,
    wait_all_finished,
    worker_available,
)
from benchmarks.drain import drain_once
from benchmarks.steady import worker_process
from chancy import Chancy, Job, Queue

MiB = 1024 * 1024
CHILDREN = 2


def unavailable() -> str | None:
    return worker_available() or executor_available(Chancy.Executor.Process)


def _tree(proc: psutil.Process) -> tuple[int, list[int]]:
    """(RSS of `proc`, RSS of each of its descendants), bytes."""
    own = proc.memory_info().rss
    kids = []
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            kids.append(child.memory_info().rss)
    return own, kids


async def served_once(dsn: str, n: int, options: dict) -> dict[str, float]:
    """Drain `n` jobs with the worker in its own process; RSS at rest and at peak."""
    app = make_app(dsn)
    try:
        async with app:
            await app.migrate()
            await app.declare(
                Queue(
                    "bench",
                    concurrency=CHILDREN,
                    executor=Chancy.Executor.Process,
                    executor_options=options,
                )
            )
            with worker_process(dsn, app.prefix, True) as proc:
                ps = psutil.Process(proc.pid)
                with anyio.fail_after(60):
                    for _ in range(CHILDREN * 2):  # warm every child
                        await app.wait_for_job(
                            await app.push(Job(func=f"{JOBS}.noop", queue="bench"))
                        )
                await anyio.sleep(1.0)
                rest_own, rest_kids = _tree(ps)
                async for _ in app.push_many([Job(func=f"{JOBS}.noop", queue="bench")] * n):
                    pass
                peak = 0
                t0 = time.perf_counter()
                async with anyio.create_task_group() as tg:

                    async def sample() -> None:
                        nonlocal peak
                        while True:
                            own, kids = _tree(ps)
                            peak = max(peak, own + sum(kids))
                            await anyio.sleep(0.1)

                    tg.start_soon(sample)
                    t1 = await wait_all_finished(dsn, app.prefix, timeout=max(120, n / 20))
                    tg.cancel_scope.cancel()
        counts = state_counts(dsn, app.prefix)
        if counts.get("succeeded") != n + CHILDREN * 2:
            raise RuntimeError(f"not every job SUCCEEDED: {counts}")
        return {
            "jobs_per_s": n / (t1 - t0),
            "rest_supervisor_mib": rest_own / MiB,
            "rest_child_mib": max(rest_kids) / MiB if rest_kids else float("nan"),
            "rest_children": len(rest_kids),
            "rest_descendants_mib": sorted(round(k / MiB, 1) for k in rest_kids),
            "rest_total_mib": (rest_own + sum(rest_kids)) / MiB,
            "peak_total_mib": peak / MiB,
        }
    finally:
        drop_tables(dsn, app.prefix)


async def pool_alone_once(n: int, children: int) -> float:
    """jobs/s of `chancy.supervisor.ChildPool` alone (no database): the supervisor + pipe
    ceiling for the process executor."""
    from benchmarks.limits import _packed_noop
    from chancy.supervisor import ChildPool

    jobs = [_packed_noop() for _ in range(n)]
    async with ChildPool(children, maximum_jobs_per_worker=10 * n) as pool:
        for _ in range(children * 2):  # every child up
            job_id, packed = _packed_noop()
            await pool.run_job(packed, job_id=job_id)
        send, receive = anyio.create_memory_object_stream[tuple[str, bytes]](n)
        for job in jobs:
            send.send_nowait(job)
        send.close()

        async def slot() -> None:
            async for job_id, packed in receive:
                assert (await pool.run_job(packed, job_id=job_id)).ok

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(children):
                tg.start_soon(slot)
        return n / (time.perf_counter() - t0)


def run(ctx: Context) -> list[Figure]:
    n = 5_000 if ctx.quick else 20_000
    figures = []
    for label, options in (
        ("default options", {}),
        ("maximum_jobs_per_worker 100000", {"maximum_jobs_per_worker": 100_000}),
    ):
        results = [
            anyio.run(drain_once, ctx.dsn, Chancy.Executor.Process, "noop", CHILDREN, n, options)
            for _ in range(ctx.runs)
        ]
        samples = [r["jobs_per_s"] for r in results]
        ctx.log(f"  process, {label}: {[round(s) for s in samples]}")
        figures.append(
            Figure(
                "process",
                f"drain, {CHILDREN} children, {label}",
                "jobs/s",
                samples,
                target=">= 3000" if not options else "",
                params={"jobs": n, "children": CHILDREN, "executor_options": options},
                extra={"db_span_jobs_per_s": [r["db_jobs_per_s"] for r in results]},
            )
        )
    alone = [anyio.run(pool_alone_once, n, CHILDREN) for _ in range(ctx.runs)]
    ctx.log(f"  ChildPool alone: {[round(s) for s in alone]}")
    figures.append(
        Figure(
            "process",
            f"ChildPool alone, {CHILDREN} children, no database",
            "jobs/s",
            alone,
            params={"jobs": n, "children": CHILDREN},
        )
    )
    served = [anyio.run(served_once, ctx.dsn, n, {}) for _ in range(ctx.runs)]
    ctx.log(f"  served: {served}")
    params = {"jobs": n, "children": CHILDREN, "worker": "benchmarks._serve (its own process)"}
    for key, name, unit, better, target in (
        ("jobs_per_s", f"drain, {CHILDREN} children, worker in own process", "jobs/s", True, ""),
        ("rest_supervisor_mib", "supervisor RSS at rest", "MiB", False, ""),
        ("rest_child_mib", "largest child RSS at rest", "MiB", False, ""),
        ("rest_total_mib", f"supervisor + {CHILDREN} children RSS at rest", "MiB", False, "<= 120"),
        ("peak_total_mib", f"supervisor + {CHILDREN} children RSS, drain peak", "MiB", False, ""),
    ):
        figures.append(
            Figure(
                "process",
                name,
                unit,
                [r[key] for r in served],
                higher_is_better=better,
                target=target,
                params=params,
                # Every descendant counts: the children and the pool's watchdog, if any.
                extra={"descendants_at_rest_mib": [r["rest_descendants_mib"] for r in served]},
            )
        )
    return figures
