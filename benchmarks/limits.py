"""Workload 5, limits: how fast the process executor enforces them, and what children cost.

* memory: a job grows past its MEMORY limit (it notes the moment its own RSS crosses it); time
  to its process tree being gone (psutil, polled every ms) and to the job being FAILED as seen
  by `wait_for_job`.
* time: a job sleeps past its 1 s TIME limit; time from the limit expiring (the job notes when
  it started) to the job being FAILED as seen by `wait_for_job`. The supervisor's clock starts
  when it hands the job over, a little before the job notes its start, so this can be < 0.
  The same with a job that swallows the stop request (killed after the grace period).
  Both run through a worker in its own process (`benchmarks._serve`, the supervisor).
* respawn: with `chancy.supervisor.ChildPool` in this process: a job's round trip on a warm
  child (the pipe), and on a child SIGKILLed while idle (spawn + handshake + the job).
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path

import anyio
import psutil

from benchmarks._harness import JOBS, Context, Figure, drop_tables, make_app
from benchmarks._worker import executor_available, worker_available
from benchmarks.steady import worker_process
from chancy import Chancy, Job, Limit, Queue
from chancy.job import QueuedJob

MiB = 1024 * 1024
MEMORY_LIMIT_MIB = 100
TIME_LIMIT_S = 1


def unavailable() -> str | None:
    return worker_available() or executor_available(Chancy.Executor.Process)


async def _marker(path: Path, timeout: float = 30) -> tuple[int, float]:
    """Wait for a job's marker file: (pid, time.time() it noted)."""
    with anyio.fail_after(timeout):
        while True:
            text = path.read_text() if path.exists() else ""
            if text.count(" ") == 1:
                pid, at = text.split()
                return int(pid), float(at)
            await anyio.sleep(0.001)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def limits_once(dsn: str) -> dict[str, float]:
    app = make_app(dsn)
    result: dict[str, float] = {}
    try:
        async with app:
            await app.migrate()
            await app.declare(Queue("limits", concurrency=1, executor=Chancy.Executor.Process))
            with worker_process(dsn, app.prefix, True), tempfile.TemporaryDirectory() as tmp:
                with anyio.fail_after(60):  # the worker and its child are up
                    await app.wait_for_job(await app.push(Job(func=f"{JOBS}.noop", queue="limits")))

                marker = Path(tmp, "memory")
                ref = await app.push(
                    Job(
                        func=f"{JOBS}.grow_past",
                        queue="limits",
                        kwargs={"limit_mib": MEMORY_LIMIT_MIB, "marker": str(marker)},
                        limits=[Limit(Limit.Type.MEMORY, MEMORY_LIMIT_MIB * MiB)],
                    )
                )
                pid, crossed = await _marker(marker)
                with anyio.fail_after(30):
                    while not _gone(pid):
                        await anyio.sleep(0.001)
                gone = time.time()
                job = await app.wait_for_job(ref, interval=0.1, timeout=30)
                failed = time.time()
                assert job is not None, job
                assert job.state == QueuedJob.State.FAILED, job
                assert "memory" in job.errors[-1]["traceback"], job.errors
                result["memory_gone_ms"] = (gone - crossed) * 1000
                result["memory_failed_ms"] = (failed - crossed) * 1000

                marker = Path(tmp, "time")
                ref = await app.push(
                    Job(
                        func=f"{JOBS}.sleep_forever",
                        queue="limits",
                        kwargs={"marker": str(marker)},
                        limits=[Limit(Limit.Type.TIME, TIME_LIMIT_S)],
                    )
                )
                _, started = await _marker(marker)
                job = await app.wait_for_job(ref, interval=0.1, timeout=30)
                failed = time.time()
                assert job is not None, job
                assert job.state == QueuedJob.State.FAILED, job
                result["time_failed_ms"] = (failed - started - TIME_LIMIT_S) * 1000

                # A job that swallows the stop request: killed after the grace period.
                marker = Path(tmp, "stubborn")
                ref = await app.push(
                    Job(
                        func=f"{JOBS}.sleep_ignoring_stop",
                        queue="limits",
                        kwargs={"marker": str(marker)},
                        limits=[Limit(Limit.Type.TIME, TIME_LIMIT_S)],
                    )
                )
                pid, started = await _marker(marker)
                with anyio.fail_after(30):
                    while not _gone(pid):
                        await anyio.sleep(0.001)
                gone = time.time()
                job = await app.wait_for_job(ref, interval=0.1, timeout=30)
                failed = time.time()
                assert job is not None, job
                assert job.state == QueuedJob.State.FAILED, job
                result["stubborn_gone_ms"] = (gone - started - TIME_LIMIT_S) * 1000
                result["stubborn_failed_ms"] = (failed - started - TIME_LIMIT_S) * 1000
    finally:
        drop_tables(dsn, app.prefix)
    return result


def _packed_noop() -> tuple[str, bytes]:
    job_id = str(uuid.uuid4())
    job = QueuedJob(id=job_id, func=f"{JOBS}.noop", queue="bench")
    return job_id, json.dumps(job.pack()).encode()


async def respawn_once() -> dict[str, float]:
    from chancy.supervisor import ChildPool

    async with ChildPool(1, maximum_jobs_per_worker=1_000_000) as pool:
        for _ in range(5):  # the first one waits for the child to be up
            job_id, packed = _packed_noop()
            assert (await pool.run_job(packed, job_id=job_id)).ok
        warm = []
        for _ in range(200):
            job_id, packed = _packed_noop()
            t0 = time.perf_counter()
            outcome = await pool.run_job(packed, job_id=job_id)
            warm.append(time.perf_counter() - t0)
            assert outcome.ok, outcome
        pid = pool.pids[0]
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(10):
            while not _gone(pid):
                await anyio.sleep(0.001)
        # Until the pool notices the death, a job handed to it fails: count how many do.
        failed = 0
        while True:
            job_id, packed = _packed_noop()
            outcome = await pool.run_job(packed, job_id=job_id)
            if outcome.ok:
                break
            failed += 1
            assert failed < 5, outcome
        respawn = time.perf_counter() - t0
    warm.sort()
    return {
        "warm_round_trip_ms": warm[len(warm) // 2] * 1000,
        "respawn_ms": respawn * 1000,
        "jobs_failed_by_idle_death": failed,
    }


def run(ctx: Context) -> list[Figure]:
    limits = [anyio.run(limits_once, ctx.dsn) for _ in range(ctx.runs)]
    ctx.log(f"  limits: {limits}")
    respawns = [anyio.run(respawn_once) for _ in range(ctx.runs)]
    ctx.log(f"  respawn: {respawns}")
    figures = []
    for key, name, results, params in (
        (
            "memory_gone_ms",
            "memory limit crossed → process tree gone",
            limits,
            {"limit_mib": MEMORY_LIMIT_MIB, "monitor_interval": "default"},
        ),
        (
            "memory_failed_ms",
            "memory limit crossed → FAILED (wait_for_job)",
            limits,
            {"limit_mib": MEMORY_LIMIT_MIB},
        ),
        (
            "time_failed_ms",
            "time limit expired → FAILED (from the job's own start + limit)",
            limits,
            {"limit_s": TIME_LIMIT_S},
        ),
        (
            "stubborn_gone_ms",
            "time limit expired, job ignores the stop → tree gone",
            limits,
            {"limit_s": TIME_LIMIT_S, "stop_grace": "default"},
        ),
        (
            "stubborn_failed_ms",
            "time limit expired, job ignores the stop → FAILED",
            limits,
            {"limit_s": TIME_LIMIT_S, "stop_grace": "default"},
        ),
        (
            "warm_round_trip_ms",
            "no-op job on a warm child (pipe round trip, median of 200)",
            respawns,
            {},
        ),
        (
            "respawn_ms",
            "idle child SIGKILLed → next job done (respawn)",
            respawns,
            {"jobs_failed_by_idle_death": [r["jobs_failed_by_idle_death"] for r in respawns]},
        ),
    ):
        figures.append(
            Figure(
                "limits",
                name,
                "ms",
                [r[key] for r in results],
                higher_is_better=False,
                params=params,
            )
        )
    return figures
