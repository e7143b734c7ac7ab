"""The process-executor drain against the floor, interleaved: per round, the bare psycopg
drain (`benchmarks.floor`, claim batches of 100 and of 10) and then the process-executor drain
with 2 and 4 children, default options and without recycling (`maximum_jobs_per_worker`
100,000), each with children forked from the fork server and spawned as fresh interpreters.
Every ratio is taken within its round (the machine is shared: compare only within one run).

    python benchmarks/run.py --only process_floor          # 3 rounds of 5,000 jobs per drain
"""

from __future__ import annotations

import statistics

import anyio

from benchmarks._harness import JOBS, Context, Figure, fresh_app
from benchmarks.drain import drain_once
from benchmarks.floor import drain as floor_drain
from benchmarks.process_drain import unavailable as _unavailable
from chancy import Chancy, Job, Queue

FLOOR_JOBS = 20_000
CHILDREN = (2, 4)
RECYCLING = (("default options", {}), ("no recycling", {"maximum_jobs_per_worker": 100_000}))
METHODS = ("forkserver", "spawn")


def unavailable() -> str | None:
    return _unavailable()


def _floor(dsn: str, batch: int) -> float:
    with fresh_app(dsn, Queue("bench")) as app:
        with app:
            jobs = [Job(func=f"{JOBS}.noop", queue="bench") for _ in range(FLOOR_JOBS)]
            for _ in app.sync_push_many(jobs):
                pass
        count, seconds = floor_drain(dsn, app.prefix, batch)
        assert count == FLOOR_JOBS, (count, FLOOR_JOBS)
    return FLOOR_JOBS / seconds


def run(ctx: Context) -> list[Figure]:
    n = 2_000 if ctx.quick else 5_000
    floors: dict[int, list[float]] = {100: [], 10: []}
    drains: dict[tuple[int, str, str], list[float]] = {}
    for round_ in range(ctx.runs):
        for batch in floors:
            floors[batch].append(_floor(ctx.dsn, batch))
        for children in CHILDREN:
            for label, options in RECYCLING:
                for method in METHODS:
                    opts = {**options, "start_method": method}
                    result = anyio.run(
                        drain_once, ctx.dsn, Chancy.Executor.Process, "noop", children, n, opts
                    )
                    drains.setdefault((children, label, method), []).append(result["jobs_per_s"])
        ctx.log(
            f"  round {round_ + 1}: floor {[round(v[-1]) for v in floors.values()]}, "
            + ", ".join(f"{k}: {round(v[-1])}" for k, v in drains.items())
        )
    figures = [
        Figure(
            "process_floor",
            f"bare psycopg drain, batch {batch}",
            "jobs/s",
            samples,
            params={"jobs": FLOOR_JOBS, "batch": batch},
        )
        for batch, samples in floors.items()
    ]
    for (children, label, method), samples in drains.items():
        ratios = {
            f"ratio_to_floor_batch_{batch}": [
                s / f for s, f in zip(samples, floors[batch], strict=True)
            ]
            for batch in floors
        }
        params = {"jobs": n, "children": children, "start_method": method}
        params["executor_options"] = dict(RECYCLING)[label]
        figures.append(
            Figure(
                "process_floor",
                f"drain, {children} children, {label}, {method}",
                "jobs/s",
                samples,
                params=params,
                extra={k: [round(r, 3) for r in v] for k, v in ratios.items()},
            )
        )
        for key, values in ratios.items():
            goal = ">= 0.30" if label == "default options" else ">= 0.5"
            figures.append(
                Figure(
                    "process_floor",
                    f"drain / floor (batch {key.rsplit('_', 1)[1]}), {children} children, "
                    f"{label}, {method}",
                    "x",
                    values,
                    target=goal if key.endswith("_100") else "",
                    params=params,
                    extra={"median": round(statistics.median(values), 3)},
                )
            )
    return figures
