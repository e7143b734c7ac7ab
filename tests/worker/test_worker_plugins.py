"""How the worker runs plugins: every plugin's actor starts in its task group (leader-only ones
too), hooks see each job, and a plugin that crashes is restarted without stopping the worker."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from support import FAST, eventually

from chancy import Chancy, Job, Queue, QueuedJob
from chancy.events import Flag, Wakeup
from chancy.plugin import Plugin
from chancy.worker import Worker

pytestmark = pytest.mark.anyio


class Recorder(Plugin):
    identifier = "test.recorder"

    def __init__(self) -> None:
        self.ran = 0
        self.starting: list[str] = []
        self.completed: list[tuple[str, str, str | None]] = []

    async def run(self, worker: Any, chancy: Any, *, task_status: Any = anyio.TASK_STATUS_IGNORED):
        self.ran += 1
        task_status.started()
        await anyio.sleep_forever()

    async def on_job_starting(self, job: QueuedJob, worker: Any) -> QueuedJob:
        self.starting.append(job.id)
        job.meta["hooked"] = True
        return job

    async def on_job_completed(
        self, job: QueuedJob, worker: Any, *, error: BaseException | None
    ) -> QueuedJob:
        self.completed.append((job.id, job.state.value, type(error).__name__ if error else None))
        return job


class LeaderOnly(Plugin):
    identifier = "test.leader_only"
    leader_only = True

    def __init__(self) -> None:
        self.passes = 0

    async def run(self, worker: Any, chancy: Any, *, task_status: Any = anyio.TASK_STATUS_IGNORED):
        task_status.started()
        await worker.is_leader.wait()
        self.passes += 1
        await anyio.sleep_forever()


class Crashy(Plugin):
    identifier = "test.crashy"

    def __init__(self) -> None:
        self.starts = 0

    async def run(self, worker: Any, chancy: Any, *, task_status: Any = anyio.TASK_STATUS_IGNORED):
        self.starts += 1
        if self.starts == 1:
            raise RuntimeError("plugin bug")
        task_status.started()
        await anyio.sleep_forever()


async def test_plugins_run_and_hook(dsn, prefix) -> None:
    recorder, leader, crashy = Recorder(), LeaderOnly(), Crashy()
    async with Chancy(dsn, prefix=prefix, plugins=[recorder, leader, crashy]) as app:
        await app.migrate()
        await app.declare(Queue("q", executor=Chancy.Executor.Async))
        async with Worker(app, **FAST) as worker:
            assert recorder.ran == 1
            ok = await app.push(Job(func="wjobs.async_noop", queue="q"))
            bad = await app.push(Job(func="wjobs.async_fail", queue="q"))
            done = await app.wait_for_job(ok, timeout=10)
            failed = await app.wait_for_job(bad, timeout=10)
            assert done.meta["hooked"] is True
            assert set(recorder.starting) == {ok.identifier, bad.identifier}
            assert (ok.identifier, "succeeded", None) in recorder.completed
            assert (bad.identifier, "failed", "RuntimeError") in recorder.completed
            assert failed.state == QueuedJob.State.FAILED
            assert leader.passes == 0, "leader-only plugins wait for worker.is_leader"
            worker.is_leader.set()
            await eventually(lambda: leader.passes == 1)
            await eventually(lambda: crashy.starts == 2, timeout=5)


async def test_flag_and_wakeup() -> None:
    flag = Flag()
    assert not flag.is_set()
    async with anyio.create_task_group() as tg:
        tg.start_soon(flag.wait)
        await anyio.sleep(0.01)
        flag.set()
    flag.clear()
    with anyio.move_on_after(0.05) as scope:
        await flag.wait()
    assert scope.cancelled_caught

    wake = Wakeup()
    assert await wake.wait(0.01) is False
    wake.set()
    wake.set()
    assert await wake.wait(1) is True
    assert await wake.wait(0.01) is False, "one wait consumes every set() before it"
