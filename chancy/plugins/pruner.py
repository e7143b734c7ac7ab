"""Pruning: the leader deletes finished jobs older than a configurable age.

Only SUCCEEDED and FAILED jobs are ever deleted (never PENDING, RUNNING or RETRYING), chosen
by their `completed_at`, in batches of at most `batch_size` rows, each its own short
transaction that skips rows another transaction holds, so pruning never keeps long locks.
After the jobs, every plugin's `cleanup()` runs.

A job's result (what its function returned, `QueuedJob.result`) is a column of its row: results
are kept as long as the job row is, and pruning a job deletes its result with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from chancy.plugin import Plugin, check_seconds, emit, leader_passes

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker


async def prune_batch(
    chancy: Chancy, *, maximum_age: float, batch_size: int = 1000, queue: str | None = None
) -> int:
    """Delete up to `batch_size` finished jobs completed more than `maximum_age` s ago."""
    async with chancy.db.connection() as conn:
        rows = await conn.fetchall(
            chancy.tables.q(
                """
                WITH old AS (
                    SELECT id FROM {jobs}
                    WHERE state IN ('succeeded', 'failed')
                      AND completed_at < now() - make_interval(secs => %(age)s)
                      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
                    ORDER BY completed_at
                    LIMIT %(limit)s
                    FOR UPDATE SKIP LOCKED
                )
                DELETE FROM {jobs} AS j USING old
                WHERE j.id = old.id AND j.state IN ('succeeded', 'failed')
                RETURNING j.id
                """
            ),
            {"age": float(maximum_age), "limit": int(batch_size), "queue": queue},
        )
    return len(rows)


class Pruner(Plugin):
    """On the leader, every `poll_interval` seconds, deletes finished jobs older than
    `maximum_age` seconds, then runs every plugin's `cleanup()`.

    :param maximum_age: seconds a finished job is kept after its completion.
    :param poll_interval: seconds between pruning passes.
    :param batch_size: most rows deleted per transaction.
    :param queue: prune only this queue (all queues by default).
    """

    identifier = "pruner"
    dependencies = ("leadership",)
    leader_only = True

    def __init__(
        self,
        *,
        maximum_age: float = 60 * 60 * 24,
        poll_interval: float = 60,
        batch_size: int = 1000,
        queue: str | None = None,
    ) -> None:
        self.maximum_age = check_seconds("maximum_age", maximum_age, allow_zero=True)
        self.poll_interval = check_seconds("poll_interval", poll_interval)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size: expected an integer >= 1")
        self.batch_size = batch_size
        self.queue = queue
        #: Jobs deleted by this plugin instance so far (for tests and metrics).
        self.pruned = 0

    async def prune(self, chancy: Chancy) -> int:
        """One full pass: delete batches until none is full, then run every plugin's cleanup."""
        total = 0
        while True:
            deleted = await prune_batch(
                chancy, maximum_age=self.maximum_age, batch_size=self.batch_size, queue=self.queue
            )
            total += deleted
            if deleted < self.batch_size:
                break
            await anyio.lowlevel.checkpoint()  # let other work through between batches
        self.pruned += total
        if total:
            chancy.log.info("pruner: deleted %d finished job(s)", total)
        for plugin in chancy.plugins:
            try:
                removed = await plugin.cleanup(chancy)
            except Exception as exc:
                chancy.log.warning("pruner: cleanup of %r failed: %s", plugin.identifier, exc)
            else:
                if removed:
                    chancy.log.info(
                        "pruner: %s cleanup removed %d row(s)", plugin.identifier, removed
                    )
        return total

    async def run(
        self, worker: Worker, chancy: Chancy, *, task_status: Any = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()

        async def one_pass() -> None:
            try:
                deleted = await self.prune(chancy)
            except Exception as exc:
                chancy.log.warning("pruner: pass failed (%s); retrying next pass", exc)
            else:
                if deleted:
                    emit(worker, "pruner.pruned", count=deleted)

        await leader_passes(worker, self.poll_interval, one_pass)
