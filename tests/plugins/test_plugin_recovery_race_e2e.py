"""Recovery racing a live worker's completions: a finished job is never changed again.

A worker process runs short jobs while the test keeps making its heartbeat look expired, so the
leader's recovery (every 50 ms) rescues jobs at the very moments the worker completes them. A
trigger records any change to a job that was already SUCCEEDED or FAILED.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import anyio
import pytest
from plugin_helpers import eventually, live_workers

from chancy import Chancy, Job, Queue
from chancy.plugins import Leadership, Recovery
from chancy.worker import Worker

pytestmark = pytest.mark.anyio

JOBS = 60


async def install_guard(app: Chancy) -> None:
    t = app.tables
    async with app.db.connection() as conn:
        await conn.execute(
            t.q("CREATE TABLE {v} (id uuid, old_state text, new_state text)", v=t("violations"))
        )
        await conn.execute(
            t.q(
                """
                CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF OLD.state IN ('succeeded', 'failed') AND (
                        NEW.state IS DISTINCT FROM OLD.state
                        OR NEW.errors IS DISTINCT FROM OLD.errors
                        OR NEW.attempts IS DISTINCT FROM OLD.attempts
                    ) THEN
                        INSERT INTO {v} VALUES (OLD.id, OLD.state, NEW.state);
                    END IF;
                    RETURN NEW;
                END $$""",
                fn=t("guard_fn"),
                v=t("violations"),
            )
        )
        await conn.execute(
            t.q(
                "CREATE TRIGGER {tr} BEFORE UPDATE ON {jobs} FOR EACH ROW EXECUTE FUNCTION {fn}()",
                tr=t("guard"),
                fn=t("guard_fn"),
            )
        )


async def test_recovery_never_changes_a_job_completed_meanwhile(
    procs, make_app, tmp_path: Path
) -> None:
    app: Chancy = await make_app(
        plugins=[Leadership(poll_interval=0.2, timeout=2), Recovery(poll_interval=0.05, grace=0)]
    )
    await install_guard(app)
    await app.declare(
        Queue("race", concurrency=4, executor=Chancy.Executor.Threaded, tags={"worker_id=runner"})
    )
    marker = tmp_path / "runs"
    procs.start("runner", {}, heartbeat_poll_interval=0.3, heartbeat_timeout=30)
    await eventually(lambda: live_workers(app), timeout=20)

    async def look_dead() -> None:
        async with app.db.connection() as conn:
            await conn.execute(
                app.tables.q(
                    "UPDATE {workers} SET expires_at = now() - interval '1 second'"
                    " WHERE worker_id = 'runner'"
                )
            )

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            rescuer = Worker(app, worker_id="rescuer", heartbeat_poll_interval=1)
            await tg.start(rescuer.run)
            await eventually(lambda: _leads(rescuer), timeout=10)

            async def keep_looking_dead(done: anyio.Event) -> None:
                while not done.is_set():
                    await look_dead()
                    await anyio.sleep(0.05)

            pushed = anyio.Event()
            tg.start_soon(keep_looking_dead, pushed)
            refs = [
                await app.push(
                    Job(
                        func="pjobs.record_job",
                        queue="race",
                        kwargs={"path": str(marker), "pause": 0.05},
                        max_attempts=100,
                    )
                )
                for _ in range(JOBS)
            ]
            await anyio.sleep(1.0)
            pushed.set()

            async def all_done() -> bool:
                async with app.db.connection() as conn:
                    row = await conn.fetchone(
                        app.tables.q("SELECT count(*) FROM {jobs} WHERE state <> 'succeeded'")
                    )
                return row == (0,)

            await eventually(all_done, timeout=40)
            tg.cancel_scope.cancel()

    async with app.db.connection() as conn:
        violations = await conn.fetchall(
            app.tables.q("SELECT * FROM {v}", v=app.tables("violations"))
        )
        rows = await conn.fetchall(app.tables.q("SELECT id::text, attempts, errors FROM {jobs}"))
    assert violations == []
    runs = Counter(marker.read_text().split())
    assert len(rows) == JOBS == len(refs)
    rescued = 0
    for job_id, attempts, errors in rows:
        lost = sum("stopped heartbeating" in e["traceback"] for e in errors)
        rescued += lost
        # Every claim ran the job once; every extra attempt came from one rescue.
        assert runs[job_id] == attempts == 1 + lost, (job_id, runs[job_id], attempts, errors)
    assert rescued > 0, "the race was not exercised: no job was rescued"


async def _leads(worker: Worker) -> bool:
    return worker.is_leader.is_set()
