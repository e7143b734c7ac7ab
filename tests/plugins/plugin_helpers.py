"""Direct database set-ups for the plugin tests (workers, jobs in given states)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from support import eventually  # noqa: F401 - the tests import it from here

from chancy import Chancy, Job, Queue

WORKER_SCRIPT = Path(__file__).parent / "plugin_worker.py"


async def add_worker(app: Chancy, worker_id: str, incarnation: str, *, alive: bool) -> None:
    """A worker row whose heartbeat is fresh (`alive`) or expired a minute ago."""
    expires = "now() + interval '1 minute'" if alive else "now() - interval '1 minute'"
    async with app.db.connection() as conn:
        await conn.execute(
            app.tables.q(
                "INSERT INTO {workers} (worker_id, incarnation, hostname, pid, expires_at,"
                " last_seen) VALUES (%s, %s, 'test', 1, " + expires + ", now())"
                " ON CONFLICT (worker_id) DO UPDATE SET incarnation = EXCLUDED.incarnation,"
                " expires_at = EXCLUDED.expires_at"
            ),
            (worker_id, incarnation),
        )


async def add_job(
    app: Chancy,
    *,
    state: str = "pending",
    taken_by: str | None = None,
    attempts: int = 0,
    max_attempts: int = 3,
    started_ago: float = 60,
    completed_ago: float | None = None,
    cancel_requested: bool = False,
    queue: str = "default",
) -> str:
    """Push a job, then force its row into the given state; returns its id.

    The job's queue is declared paused (unless it exists), so no running worker takes it.
    """
    await app.declare(Queue(queue, state=Queue.State.PAUSED))
    ref = await app.push(Job(func="pjobs.noop", queue=queue, max_attempts=max_attempts))
    async with app.db.connection() as conn:
        await conn.execute(
            app.tables.q(
                "UPDATE {jobs} SET state = %s, taken_by = %s, attempts = %s,"
                " started_at = now() - make_interval(secs => %s),"
                " completed_at = CASE WHEN %s::float8 IS NULL THEN NULL"
                "   ELSE now() - make_interval(secs => %s::float8) END,"
                " cancel_requested = %s WHERE id = %s"
            ),
            (
                state,
                taken_by,
                attempts,
                started_ago,
                completed_ago,
                completed_ago,
                cancel_requested,
                ref.identifier,
            ),
        )
    return ref.identifier


async def job_row(app: Chancy, job_id: str) -> dict[str, Any] | None:
    """The job's state, holder, attempts, errors and times as a dict (None if deleted)."""
    async with app.db.connection() as conn:
        row = await conn.fetchone(
            app.tables.q(
                "SELECT state, taken_by, attempts, errors, completed_at, scheduled_at"
                " FROM {jobs} WHERE id = %s"
            ),
            (job_id,),
        )
    if row is None:
        return None
    keys = ("state", "taken_by", "attempts", "errors", "completed_at", "scheduled_at")
    return dict(zip(keys, row, strict=True))


async def count_jobs(app: Chancy, where: str = "true", params: tuple = ()) -> int:
    async with app.db.connection() as conn:
        row = await conn.fetchone(
            app.tables.q("SELECT count(*) FROM {jobs} WHERE " + where), params
        )
    assert row is not None
    return int(row[0])


class WorkerProcs:
    """Worker subprocesses (plugin_worker.py) for one test; all are stopped at the end."""

    def __init__(self, dsn: str, prefix: str, backend: str) -> None:
        self.dsn = dsn
        self.prefix = prefix
        self.backend = backend
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, worker_id: str, plugins: dict[str, dict], **worker: Any) -> int:
        config = {
            "dsn": self.dsn,
            "prefix": self.prefix,
            "worker_id": worker_id,
            "backend": self.backend,
            "plugins": plugins,
            "worker": {"register_signal_handlers": True, **worker},
        }
        proc = subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT), json.dumps(config)],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs[worker_id] = proc
        return proc.pid

    def kill(self, worker_id: str) -> None:
        """SIGKILL the worker: no cleanup of any kind runs."""
        proc = self.procs[worker_id]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def alive(self, worker_id: str) -> bool:
        return self.procs[worker_id].poll() is None

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


async def live_workers(app: Chancy) -> dict[str, str]:
    """{worker_id: taken_by identity} of workers with a fresh heartbeat."""
    async with app.db.connection() as conn:
        rows = await conn.fetchall(
            app.tables.q(
                "SELECT worker_id, worker_id || ':' || incarnation FROM {workers}"
                " WHERE expires_at > now()"
            )
        )
    return dict(rows)


async def leader_id(app: Chancy) -> str | None:
    async with app.db.connection() as conn:
        row = await conn.fetchone(
            app.tables.q("SELECT worker_id FROM {leader} WHERE expires_at > now()")
        )
    return row[0] if row else None
