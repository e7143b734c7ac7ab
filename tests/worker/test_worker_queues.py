"""Which queues a worker runs: tags, pause/resume, upsert and delete at runtime, rate limits,
executors that fail to load, and several workers on one queue."""

from __future__ import annotations

import functools
import math
import platform

import anyio
import pytest
import wjobs
from support import eventually, fetch, job_row

from chancy import Chancy, Job, Queue, QueuedJob

pytestmark = pytest.mark.anyio

ASYNC = Chancy.Executor.Async


async def test_worker_tags(chancy) -> None:
    from chancy.worker import Worker

    worker = Worker(chancy, worker_id="w1", tags={"has=gpu"})
    tags = worker.worker_tags()
    assert {"*", "worker_id=w1", "has=gpu", f"python={platform.python_version()}"} <= tags
    assert {t.split("=")[0] for t in tags} >= {"hostname", "arch", "os", "python", "worker_id"}


async def test_tags_route_queues(chancy, start_worker) -> None:
    await chancy.declare(Queue("gpu", executor=ASYNC, tags={"has=gpu"}))
    await chancy.declare(Queue("py", executor=ASYNC, tags={r"python=3\.[0-9]+\.[0-9]+"}))
    await chancy.declare(Queue("nowhere", executor=ASYNC, tags={"has=tpu"}))
    plain = await start_worker(worker_id="plain")
    gpu = await start_worker(worker_id="gpu", tags={"has=gpu"})
    await eventually(lambda: set(gpu.executors) == {"gpu", "py"})
    assert set(plain.executors) == {"py"}
    refs = [
        await chancy.push(Job(func="wjobs.async_record", queue="gpu", kwargs={"label": "g"}))
        for _ in range(5)
    ]
    for ref in refs:
        assert (await chancy.wait_for_job(ref, timeout=10)).state == QueuedJob.State.SUCCEEDED
    assert plain.executors.keys() == {"py"}
    ref = await chancy.push(Job(func="wjobs.async_record", queue="nowhere", kwargs={"label": "n"}))
    await anyio.sleep(0.3)
    assert (await job_row(chancy, ref.identifier, "state"))[0] == "pending"
    workers = {w["worker_id"]: w for w in await chancy.get_all_workers()}
    assert sorted(workers["gpu"]["queues"]) == ["gpu", "py"]
    assert "has=gpu" in workers["gpu"]["tags"]


@pytest.mark.parametrize("notifications", [True, False], ids=["notify", "poll"])
async def test_pause_resume_upsert_delete_at_runtime(
    dsn, prefix, start_worker, notifications
) -> None:
    async with Chancy(dsn, prefix=prefix, plugins=[], notifications=notifications) as app:
        await app.migrate()
        await app.declare(Queue("q", executor=ASYNC, concurrency=1, polling_interval=0.2))
        worker = await start_worker(app)
        await eventually(lambda: "q" in worker.executors)
        # Within a second with notifications; within queue_change_poll_interval (1 s) without.
        limit = 1.5 if notifications else 3
        await app.set_queue_state("q", Queue.State.PAUSED)
        await eventually(lambda: "q" not in worker.executors, timeout=limit)
        ref = await app.push(Job(func="wjobs.async_record", queue="q", kwargs={"label": "p"}))
        await anyio.sleep(0.5)
        assert wjobs.RUNS["p"] == []
        await app.set_queue_state("q", Queue.State.ACTIVE)
        job = await app.wait_for_job(ref, interval=0.1, timeout=limit + 2)
        assert job.state == QueuedJob.State.SUCCEEDED

        await app.declare(Queue("q", executor=Chancy.Executor.Threaded, concurrency=3), upsert=True)

        def upserted() -> bool:
            ex = worker.executors.get("q")
            return (
                ex is not None and ex.concurrency == 3 and type(ex).__name__ == "ThreadedExecutor"
            )

        await eventually(upserted, timeout=limit)
        await app.delete_queue("q")
        await eventually(lambda: "q" not in worker.executors, timeout=limit)


async def test_changed_queue_drains_running_jobs_first(chancy, start_worker) -> None:
    await chancy.declare(Queue("q", executor=ASYNC, concurrency=1))
    worker = await start_worker()
    ref = await chancy.push(
        Job(func="wjobs.async_sleep", queue="q", kwargs={"label": "d", "seconds": 1})
    )
    await eventually(lambda: wjobs.RUNS["d"] == ["start"])
    old = worker.executors["q"]
    await chancy.declare(Queue("q", executor=ASYNC, concurrency=2), upsert=True)
    job = await chancy.wait_for_job(ref, timeout=10)
    assert job.state == QueuedJob.State.SUCCEEDED, "the running job finished, not cut off"
    await eventually(lambda: worker.executors.get("q") not in (None, old))
    assert worker.executors["q"].concurrency == 2


async def test_rate_limit_across_two_workers(chancy, start_worker) -> None:
    await chancy.declare(
        Queue(
            "rl",
            executor=ASYNC,
            concurrency=10,
            rate_limit=3,
            rate_limit_window=1,
            polling_interval=0.1,
        )
    )
    jobs = [Job(func="wjobs.async_noop", queue="rl") for _ in range(9)]
    refs = [r async for batch in chancy.push_many(jobs) for r in batch]
    await start_worker(worker_id="a")
    await start_worker(worker_id="b")
    for ref in refs:
        assert (await chancy.wait_for_job(ref, timeout=15)).state == QueuedJob.State.SUCCEEDED
    rows = await fetch(
        chancy, "SELECT extract(epoch FROM started_at) FROM {jobs} WHERE queue = 'rl'"
    )
    windows: dict[int, int] = {}
    for (started,) in rows:
        window = math.floor(float(started))
        windows[window] = windows.get(window, 0) + 1
    assert max(windows.values()) <= 3, windows
    assert len(windows) >= 3


async def test_broken_executor_does_not_stop_other_queues(chancy, start_worker, caplog) -> None:
    # `declare` refuses these; a worker still meets them when another host (with other code)
    # declared them, so they are stored past the check here.
    for queue in (
        Queue("broken", executor="chancy.executors.nothing.Nope"),
        Queue("badopts", executor=ASYNC, executor_options={"bogus": 1}),
    ):
        await chancy._run(functools.partial(chancy._declare, queue=queue, upsert=False))
    await chancy.declare(Queue("good", executor=ASYNC))
    worker = await start_worker()
    ref = await chancy.push(Job(func="wjobs.async_record", queue="good", kwargs={"label": "g"}))
    assert (await chancy.wait_for_job(ref, timeout=10)).state == QueuedJob.State.SUCCEEDED
    assert set(worker.executors) == {"good"}
    text = caplog.text
    assert "'broken'" in text
    assert "chancy.executors.nothing.Nope" in text
    assert "'badopts'" in text
    assert "bogus" in text
    # The failure is visible outside the worker's log: in its row of get_all_workers().

    async def statuses() -> dict:
        rows = await chancy.get_all_workers()
        status = rows[0]["queue_status"] if rows else {}
        running = status.get("good") == {"status": "running"}
        return status if running and {"broken", "badopts"} <= set(status) else {}

    status = await eventually(statuses)
    assert status["good"] == {"status": "running"}
    assert status["broken"]["status"] == "failed"
    assert "chancy.executors.nothing.Nope" in status["broken"]["error"]
    assert "bogus" in status["badopts"]["error"]
    await chancy.delete_queue("broken")
    await eventually(lambda: statuses_without("broken", chancy))


async def statuses_without(name: str, chancy) -> bool:
    rows = await chancy.get_all_workers()
    return bool(rows) and name not in rows[0]["queue_status"]


async def test_two_workers_never_run_the_same_job(chancy, start_worker) -> None:
    await chancy.declare(Queue("q", executor=ASYNC, concurrency=8))
    n = 3000
    jobs = [Job(func="wjobs.async_meta", queue="q", kwargs={"label": "dup"}) for _ in range(n)]
    async for _ in chancy.push_many(jobs):
        pass
    a = await start_worker(worker_id="a")
    b = await start_worker(worker_id="b")

    async def done() -> bool:
        rows = await fetch(chancy, "SELECT count(*) FROM {jobs} WHERE state = 'succeeded'")
        return rows[0][0] == n

    await eventually(done, timeout=60, interval=0.1)
    runs = wjobs.RUNS["dup"]
    assert len(runs) == n
    assert len(set(runs)) == n
    assert a.jobs_claimed > 0
    assert b.jobs_claimed > 0


async def test_job_pushed_before_its_queue_runs_once_declared(chancy, start_worker) -> None:
    # A web app may push before the worker deployment has declared the queue.
    ref = await chancy.push(Job(func="wjobs.async_record", queue="late", kwargs={"label": "l"}))
    worker = await start_worker()
    await anyio.sleep(0.5)
    assert wjobs.RUNS["l"] == []
    await chancy.declare(Queue("late", executor=ASYNC, polling_interval=0.2))
    await eventually(lambda: "late" in worker.executors)
    job = await chancy.wait_for_job(ref, interval=0.1, timeout=10)
    assert job.state == QueuedJob.State.SUCCEEDED
    assert wjobs.RUNS["l"]


async def test_a_queue_that_keeps_failing_backs_off(chancy, start_worker, monkeypatch) -> None:
    """A restart budget, then a longer pause; both visible in the worker's row."""
    from chancy.actors import queue_watcher

    monkeypatch.setattr(queue_watcher, "RETRY_BROKEN", 0.2)
    monkeypatch.setattr(queue_watcher, "RESTART_BUDGET", 2)
    monkeypatch.setattr(queue_watcher, "BROKEN_PAUSE", 600.0)
    broken = Queue("broken", executor="chancy.executors.nothing.Nope")
    await chancy._run(functools.partial(chancy._declare, queue=broken, upsert=False))
    await start_worker()

    async def status() -> dict:
        rows = await chancy.get_all_workers()
        return (rows[0]["queue_status"] or {}).get("broken", {}) if rows else {}

    paused = await eventually(lambda: _when(status(), lambda s: s.get("failures") == 3), timeout=20)
    assert paused["status"] == "failed"
    assert paused["retry_in"] > 500  # the long pause, after two quick retries
    await anyio.sleep(2.5)  # two more refreshes: no new attempt during the pause
    assert (await status())["failures"] == 3
    # New settings reset the budget: it is tried again at once (and fails again: count 1).
    broken = Queue("broken", executor="chancy.executors.nothing.Other")
    await chancy._run(functools.partial(chancy._declare, queue=broken, upsert=True))
    again = await eventually(
        lambda: _when(status(), lambda s: "Other" in s.get("error", "")), timeout=20
    )
    assert again["failures"] == 1


async def _when(value, predicate):  # an awaited value if predicate(value) holds
    got = await value
    return got if predicate(got) else None
