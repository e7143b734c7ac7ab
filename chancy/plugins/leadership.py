"""Leadership: one leader per cluster (per table prefix), elected through the database.

The `leader` table holds at most one row: the leader's worker id and incarnation and when its
lease expires. Every worker runs this plugin; each `poll_interval` it runs one statement that
either takes an expired (or missing) lease or renews its own, so exactly one worker holds the
lease at any time. All times are the database's clock, so the workers' clocks do not matter.

A leader that cannot renew (database unreachable) gives up `worker.is_leader` once its lease
may have run out, measured on its own monotonic clock from the start of the last successful
renewal, so two workers never both believe they lead. A leader that stops cleanly deletes its
lease so another worker takes over at its next poll; one that dies is replaced within `timeout`
seconds of its last renewal (the others wait for the lease's expiry when it comes before their
next poll). The worker's hub gets ``leadership.gained`` and
``leadership.lost`` events.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio

from chancy.plugin import Plugin, check_seconds, emit, worker_identity

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

#: Hub event kinds (body: worker_id).
GAINED = "leadership.gained"
LOST = "leadership.lost"


async def try_acquire(chancy: Chancy, worker_id: str, incarnation: str, timeout: float) -> bool:
    """Take the lease if it is free or expired, or renew it if we hold it; True if we lead."""
    async with chancy.db.connection() as conn:
        row = await conn.fetchone(
            chancy.tables.q(
                """
                INSERT INTO {leader} AS l (id, worker_id, incarnation, elected_at, expires_at)
                VALUES (1, %(wid)s, %(inc)s, now(), now() + make_interval(secs => %(ttl)s))
                ON CONFLICT (id) DO UPDATE SET
                    worker_id = EXCLUDED.worker_id,
                    incarnation = EXCLUDED.incarnation,
                    elected_at = CASE
                        WHEN l.worker_id = EXCLUDED.worker_id
                         AND l.incarnation = EXCLUDED.incarnation
                         AND l.expires_at > now()
                        THEN l.elected_at ELSE now() END,
                    expires_at = EXCLUDED.expires_at
                WHERE l.expires_at <= now()
                   OR (l.worker_id = EXCLUDED.worker_id AND l.incarnation = EXCLUDED.incarnation)
                RETURNING worker_id
                """
            ),
            {"wid": worker_id, "inc": incarnation, "ttl": float(timeout)},
        )
    return row is not None


async def lease_remaining(chancy: Chancy) -> float | None:
    """Seconds until the current lease expires (<= 0: expired), or None without a lease."""
    async with chancy.db.connection() as conn:
        row = await conn.fetchone(
            chancy.tables.q(
                "SELECT extract(epoch FROM expires_at - now())::float8 FROM {leader} WHERE id = 1"
            )
        )
    return None if row is None else float(row[0])


async def release(chancy: Chancy, worker_id: str, incarnation: str) -> bool:
    """Give up the lease if we hold it; True if we did."""
    async with chancy.db.connection() as conn:
        row = await conn.fetchone(
            chancy.tables.q(
                "DELETE FROM {leader} WHERE id = 1 AND worker_id = %s AND incarnation = %s"
                " RETURNING worker_id"
            ),
            (worker_id, incarnation),
        )
    return row is not None


async def current_leader(chancy: Chancy) -> dict[str, Any] | None:
    """The unexpired lease as a dict (worker_id, incarnation, elected_at, expires_at), or None."""
    async with chancy.db.connection() as conn:
        row = await conn.fetchone(
            chancy.tables.q(
                "SELECT worker_id, incarnation, elected_at, expires_at FROM {leader}"
                " WHERE id = 1 AND expires_at > now()"
            )
        )
    if row is None:
        return None
    return dict(zip(("worker_id", "incarnation", "elected_at", "expires_at"), row, strict=True))


class _Lease:
    """Monotonic time until which this worker's lease surely holds (0: no lease)."""

    def __init__(self) -> None:
        self.until = 0.0


class Leadership(Plugin):
    """Elects one leader per cluster and keeps `worker.is_leader` in step with it.

    :param poll_interval: seconds between attempts to take or renew the lease.
    :param timeout: seconds a lease lasts without renewal (the longest a dead leader can keep
        the cluster leaderless); must be more than `poll_interval`.
    """

    identifier = "leadership"

    def __init__(self, *, poll_interval: float = 15, timeout: float = 60) -> None:
        self.poll_interval = check_seconds("poll_interval", poll_interval)
        self.timeout = check_seconds("timeout", timeout)
        if self.timeout <= self.poll_interval:
            raise ValueError(
                f"timeout ({timeout} s) must be longer than poll_interval ({poll_interval} s)"
            )

    async def run(
        self, worker: Worker, chancy: Chancy, *, task_status: Any = anyio.TASK_STATUS_IGNORED
    ) -> None:
        worker_id, incarnation = worker_identity(worker)
        lease = _Lease()  # per run: one plugin object may serve several workers of an app
        task_status.started()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watchdog, worker, worker_id, lease)
                await self._campaign(worker, chancy, worker_id, incarnation, lease)
        finally:
            with anyio.CancelScope(shield=True):
                if worker.is_leader.is_set():
                    self._set(worker, False, worker_id)
                    with anyio.move_on_after(5):
                        try:
                            await release(chancy, worker_id, incarnation)
                        except Exception as exc:  # the lease then simply expires
                            chancy.log.warning("leadership: could not release the lease: %s", exc)

    async def _campaign(
        self, worker: Worker, chancy: Chancy, worker_id: str, incarnation: str, lease: _Lease
    ) -> None:
        """Take or renew the lease every `poll_interval` (sooner when it would run out)."""
        while True:
            started = time.monotonic()
            try:
                leads = await try_acquire(chancy, worker_id, incarnation, self.timeout)
            except Exception as exc:
                chancy.log.warning("leadership: cannot reach the database (%s); retrying", exc)
                leads = time.monotonic() < lease.until
            else:
                lease.until = started + self.timeout if leads else 0.0
                leads = leads and time.monotonic() < lease.until
            self._set(worker, leads, worker_id)
            if leads:
                # Renew sooner than the lease can run out, whatever happens to this round.
                delay = min(self.poll_interval, lease.until - time.monotonic())
            else:
                # Try again when the current lease ends, if that comes before the next poll,
                # so a dead leader is replaced within `timeout`.
                delay = min(self.poll_interval, await self._until_free(chancy))
            await anyio.sleep(max(delay, 0.05))

    async def _until_free(self, chancy: Chancy) -> float:
        try:
            remaining = await lease_remaining(chancy)
        except Exception:
            return self.poll_interval
        return 0.0 if remaining is None else max(remaining, 0.0) + 0.01

    async def _watchdog(self, worker: Worker, worker_id: str, lease: _Lease) -> None:
        """Give up `is_leader` when the lease may have run out, even while a renewal hangs."""
        while True:
            remaining = lease.until - time.monotonic()
            if remaining <= 0:
                self._set(worker, False, worker_id)
                # Not leading: wake often enough to be back before a new lease can end.
                await anyio.sleep(min(self.poll_interval, 1.0))
            else:
                await anyio.sleep(remaining)

    @staticmethod
    def _set(worker: Worker, leads: bool, worker_id: str) -> None:
        was = worker.is_leader.is_set()
        if leads and not was:
            worker.is_leader.set()
            worker.chancy.log.info("leadership: worker %s is now the leader", worker_id)
            emit(worker, GAINED, worker_id=worker_id)
        elif was and not leads:
            worker.is_leader.clear()
            worker.chancy.log.info("leadership: worker %s is no longer the leader", worker_id)
            emit(worker, LOST, worker_id=worker_id)
