"""Pruning on a running leader: finished jobs go, unfinished ones stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest
from plugin_helpers import add_job, count_jobs, eventually, job_row

from chancy import Chancy, Job, Queue
from chancy.plugins import Leadership, Pruner
from chancy.worker import Worker

pytestmark = pytest.mark.anyio


async def test_pruner_never_touches_unfinished_jobs(make_app) -> None:
    pruner = Pruner(maximum_age=0, poll_interval=0.2, batch_size=3)
    app: Chancy = await make_app(plugins=[Leadership(poll_interval=0.2, timeout=2), pruner])
    await app.declare(Queue("p", concurrency=1, executor=Chancy.Executor.Async))
    blocker = await app.push(Job(func="pjobs.sleep_forever", queue="p"))
    waiting = [
        await app.push(Job(func="pjobs.noop", queue="p")),
        await app.push(
            Job(func="pjobs.noop", queue="p").with_scheduled_at(
                datetime.now(UTC) + timedelta(hours=1)
            )
        ),
    ]
    retrying = await add_job(app, state="retrying", queue="held", completed_ago=3600)
    finished = [await add_job(app, state="succeeded", completed_ago=1) for _ in range(7)]
    finished.append(await add_job(app, state="failed", completed_ago=1))
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            worker = Worker(app, worker_id="pruning", heartbeat_poll_interval=1)
            await tg.start(worker.run)

            async def blocker_running() -> bool:
                row = await job_row(app, blocker.identifier)
                return row is not None and row["state"] == "running"

            await eventually(blocker_running, timeout=10)

            async def all_pruned() -> bool:
                return await count_jobs(app, "state IN ('succeeded', 'failed')") == 0

            await eventually(all_pruned, timeout=10)
            await anyio.sleep(0.6)  # a few more passes
            for job_id in finished:
                assert await job_row(app, job_id) is None
            row = await job_row(app, blocker.identifier)
            assert row is not None
            assert row["state"] == "running"
            for ref in waiting:
                row = await job_row(app, ref.identifier)
                assert row is not None
                assert row["state"] == "pending"
            row = await job_row(app, retrying)
            assert row is not None
            assert row["state"] == "retrying"
            assert pruner.pruned == len(finished)
            tg.cancel_scope.cancel()
