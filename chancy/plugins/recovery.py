"""Recovery: the leader rescues jobs left RUNNING by workers that died.

A job is held by the incarnation of a worker (`taken_by` is ``"<worker_id>:<incarnation>"``). It
is abandoned when no worker row with that identity has an unexpired heartbeat: the worker
stopped heartbeating, or its row was already pruned, or it restarted under the same
`worker_id` (a new incarnation, so the old one's jobs no longer match). Abandoned jobs become
RETRYING (runnable at once, `taken_by` cleared) when they have attempts left, else FAILED; an
error entry records the lost attempt (the attempt was counted when the job was claimed).

Every change is guarded by the state and the holder seen when the row was locked, so a job that
completed meanwhile is never overwritten; rows another transaction holds (a completion being
written) are skipped and looked at again next pass. Jobs claimed less than `grace` seconds ago
are left alone, so a worker is never judged by a heartbeat it has not had time to write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from chancy._sql import event
from chancy.plugin import Plugin, check_seconds, emit, leader_passes
from chancy.plugins.retry import Retry

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker


def _rescue_query(chancy: Chancy) -> Any:
    return chancy.tables.q(
        """
        WITH lost AS (
            SELECT j.id, j.taken_by FROM {jobs} j
            WHERE j.state = 'running'
              AND j.started_at < now() - make_interval(secs => %(grace)s)
              AND NOT EXISTS (
                  SELECT 1 FROM {workers} w
                  WHERE w.worker_id || ':' || w.incarnation = j.taken_by
                    AND w.expires_at > now()
              )
            ORDER BY j.id
            LIMIT %(limit)s
            FOR UPDATE OF j SKIP LOCKED
        )
        UPDATE {jobs} AS j SET
            state = CASE
                WHEN j.cancel_requested OR j.attempts >= j.max_attempts THEN 'failed'
                ELSE 'retrying' END,
            completed_at = CASE
                WHEN j.cancel_requested OR j.attempts >= j.max_attempts THEN now() END,
            scheduled_at = CASE
                WHEN j.cancel_requested OR j.attempts >= j.max_attempts THEN j.scheduled_at
                ELSE now() END,
            taken_by = NULL,
            errors = j.errors || jsonb_build_array(jsonb_build_object(
                'attempt', j.attempts,
                'traceback', 'job lost: its worker ' || coalesce(j.taken_by, '(unknown)')
                    || ' stopped heartbeating while the job was running',
                'at', now()
            ))
        FROM lost
        WHERE j.id = lost.id AND j.state = 'running'
          AND j.taken_by IS NOT DISTINCT FROM lost.taken_by
        RETURNING j.id::text, j.queue, j.state
        """
    )


async def rescue_jobs(
    chancy: Chancy, *, grace: float = 10, batch_size: int = 1000
) -> list[tuple[Any, ...]]:
    """Rescue up to `batch_size` abandoned jobs; returns (id, queue, new_state) of each.

    Sends a push notice for the queues that got runnable jobs back, and a ``job.done`` notice
    naming the jobs that failed (so `wait_for_job` returns at once).
    """
    async with chancy.db.connection() as conn, conn.transaction():
        rows = await conn.fetchall(
            _rescue_query(chancy), {"grace": float(grace), "limit": int(batch_size)}
        )
        later = await _back_off(chancy, conn, rows)
        if rows and chancy.notifications:
            runnable = sorted(
                {queue for id_, queue, state in rows if state == "retrying" and id_ not in later}
            )
            if runnable:
                await conn.execute(
                    "SELECT pg_notify(%s, %s)",
                    (chancy.tables.channel, event("pushed", q=runnable)),
                )
            failed = [id_ for id_, _, state in rows if state == "failed"]
            for start in range(0, len(failed), 150):
                await conn.execute(
                    "SELECT pg_notify(%s, %s)",
                    (chancy.tables.channel, event("job.done", ids=failed[start : start + 150])),
                )
    return [tuple(row) for row in rows]


async def _back_off(chancy: Chancy, conn: Any, rows: list[tuple[Any, ...]]) -> set[str]:
    """With a Retry plugin, a rescued job waits its backoff like any failed attempt (the lost
    run counts as one); returns the ids that were put off. Without one it runs again at once."""
    retry = next((p for p in chancy.plugins if isinstance(p, Retry)), None)
    ids = [id_ for id_, _, state in rows if state == "retrying"]
    if retry is None or not ids:
        return set()
    found = await conn.fetchall(
        chancy.tables.q("SELECT id::text, attempts, meta FROM {jobs} WHERE id = ANY(%s::uuid[])"),
        (ids,),
    )
    delays = {id_: retry.delay_for(attempts, meta or {}) for id_, attempts, meta in found}
    later = {id_: delay for id_, delay in delays.items() if delay > 0}
    if later:
        await conn.execute(
            chancy.tables.q(
                "UPDATE {jobs} AS j SET scheduled_at = now() + make_interval(secs => d.delay)"
                " FROM (SELECT unnest(%s::uuid[]) AS id, unnest(%s::float8[]) AS delay) d"
                " WHERE j.id = d.id AND j.state = 'retrying'"
            ),
            (list(later), list(later.values())),
        )
    return set(later)


class Recovery(Plugin):
    """On the leader, every `poll_interval` seconds, rescues jobs of dead workers.

    :param poll_interval: seconds between passes.
    :param grace: jobs claimed less than this many seconds ago are never rescued.
    :param batch_size: most jobs changed in one transaction (passes repeat until done).
    """

    identifier = "recovery"
    dependencies = ("leadership",)
    leader_only = True

    def __init__(
        self, *, poll_interval: float = 30, grace: float = 10, batch_size: int = 1000
    ) -> None:
        self.poll_interval = check_seconds("poll_interval", poll_interval)
        self.grace = check_seconds("grace", grace, allow_zero=True)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size: expected an integer >= 1")
        self.batch_size = batch_size
        #: Jobs rescued by this plugin instance so far (for tests and metrics).
        self.rescued = 0

    async def rescue(self, chancy: Chancy, worker: Worker | None = None) -> int:
        """One full pass: rescue batches until none is full; returns the number rescued."""
        total = 0
        while True:
            rows = await rescue_jobs(chancy, grace=self.grace, batch_size=self.batch_size)
            total += len(rows)
            if rows:
                chancy.log.warning(
                    "recovery: rescued %d job(s) of dead workers: %s",
                    len(rows),
                    ", ".join(f"{id_} -> {state}" for id_, _, state in rows[:10]),
                )
                if worker is not None:
                    emit(worker, "recovery.rescued", jobs=[r[0] for r in rows])
            if len(rows) < self.batch_size:
                break
        self.rescued += total
        return total

    async def run(
        self, worker: Worker, chancy: Chancy, *, task_status: Any = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()

        async def one_pass() -> None:
            try:
                await self.rescue(chancy, worker)
            except Exception as exc:
                chancy.log.warning("recovery: pass failed (%s); retrying next pass", exc)

        await leader_passes(worker, self.poll_interval, one_pass)
