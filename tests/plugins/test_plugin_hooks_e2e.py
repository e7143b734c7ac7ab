"""The plugin interface with a real worker: hooks change jobs, actors run, tables migrate."""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import pytest
from psycopg import sql

from chancy import Chancy, Job, Queue
from chancy._sql import Tables
from chancy.job import QueuedJob
from chancy.migrations import Migration
from chancy.plugin import Plugin
from chancy.worker import Worker

pytestmark = pytest.mark.anyio


def _up(t: Tables) -> list[sql.Composable]:
    return [t.q("CREATE TABLE {audit} (job_id uuid, state text)", audit=t("audit"))]


def _down(t: Tables) -> list[sql.Composable]:
    return [t.q("DROP TABLE {audit}", audit=t("audit"))]


class Audit(Plugin):
    """Stamps jobs as they start and end, and records outcomes in a table of its own."""

    identifier = "audit"

    def __init__(self) -> None:
        self.actor_started = anyio.Event()

    def migrations(self) -> list[Migration]:
        return [Migration(1, "audit table", _up, _down)]

    async def run(
        self, worker: Worker, chancy: Chancy, *, task_status: Any = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        self.actor_started.set()
        await anyio.sleep_forever()

    async def on_job_starting(self, job: QueuedJob, worker: Worker) -> QueuedJob:
        return dataclasses.replace(job, meta={**job.meta, "started_by": worker.worker_id})

    async def on_job_completed(
        self, job: QueuedJob, worker: Worker, *, error: BaseException | None
    ) -> QueuedJob:
        async with worker.chancy.db.connection() as conn:
            await conn.execute(
                worker.chancy.tables.q(
                    "INSERT INTO {audit} VALUES (%s, %s)", audit=worker.chancy.tables("audit")
                ),
                (job.id, job.state.value),
            )
        outcome = type(error).__name__ if error else "ok"
        return dataclasses.replace(job, meta={**job.meta, "outcome": outcome})


async def test_hooks_change_jobs_and_plugin_tables_are_migrated(dsn: str, prefix: str) -> None:
    audit = Audit()
    app = Chancy(dsn, prefix=prefix, plugins=[audit])
    async with app:
        assert not await app.is_up_to_date()
        await app.migrate()
        assert (await app.schema_versions())["plugin:audit"] == (1, 1)
        await app.declare(Queue("h", concurrency=2, executor=Chancy.Executor.Async))
        ok = await app.push(Job(func="pjobs.async_ok", queue="h"))
        bad = await app.push(Job(func="pjobs.async_fail", queue="h"))
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                worker = Worker(app, worker_id="hooked", heartbeat_poll_interval=1)
                await tg.start(worker.run)
                await audit.actor_started.wait()
                done_ok = await app.wait_for_job(ok, timeout=20)
                done_bad = await app.wait_for_job(bad, timeout=20)
                tg.cancel_scope.cancel()
        assert done_ok is not None
        assert done_bad is not None
        assert done_ok.state == QueuedJob.State.SUCCEEDED
        assert done_ok.meta == {"started_by": "hooked", "outcome": "ok"}
        assert done_bad.state == QueuedJob.State.FAILED
        assert done_bad.meta == {"started_by": "hooked", "outcome": "ValueError"}
        async with app.db.connection() as conn:
            rows = await conn.fetchall(
                app.tables.q("SELECT job_id::text, state FROM {a}", a=app.tables("audit"))
            )
        assert sorted(rows) == sorted([(ok.identifier, "succeeded"), (bad.identifier, "failed")])
        await app.migrate(to_version=0)
