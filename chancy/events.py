"""Events and signals shared by the actors, the executors and the hub: wake-ups, flags and
hub events.

Actors talk through anyio memory object streams and the small event types below. `Flag` and
`Wakeup` may be created outside an event loop (the anyio event inside is made lazily), so a
`Worker` can be built from synchronous code.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import anyio


class Flag:
    """An event that can also be cleared (anyio's `Event` cannot), e.g. `Worker.is_leader`."""

    def __init__(self) -> None:
        self._set = False
        self._event: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<Flag {'set' if self._set else 'clear'}>"

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()
            self._event = None

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        """Return once the flag is set (at once if it is)."""
        while not self._set:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()


class Wakeup:
    """A level-triggered wake-up: `set()` any number of times, one `wait()` consumes them all."""

    def __init__(self) -> None:
        self._pending = False
        self._event: anyio.Event | None = None

    def set(self) -> None:
        self._pending = True
        if self._event is not None:
            self._event.set()

    async def wait(self, timeout: float = math.inf) -> bool:
        """Wait up to `timeout` seconds for a wake-up; True when woken, False on timeout."""
        if not self._pending:
            self._event = event = anyio.Event()
            try:
                with anyio.move_on_after(timeout):
                    await event.wait()
            finally:
                self._event = None
        woken, self._pending = self._pending, False
        return woken


@dataclasses.dataclass(frozen=True)
class HubEvent:
    """One event on the worker's hub: a `kind` (e.g. "queue.wake") and its fields."""

    kind: str
    body: dict[str, Any]


#: Kinds of hub events the worker emits.
QUEUE_WAKE = "queue.wake"  # body: queue (name, or None for every queue)
QUEUE_CHANGED = "queue.changed"  # body: queue (name, or None)
JOB_CANCELLED = "job.cancelled"  # body: id
JOBS_DONE = "jobs.done"  # body: ids (finished jobs, seen on the channel)
WORKER_ANNOUNCED = "worker.announced"  # body: worker_id
LISTENER_CONNECTED = "listener.connected"  # body: reconnect (bool)
JOB_STARTED = "job.started"  # body: job (local telemetry)
JOB_FINISHED = "job.finished"  # body: job (its new state; local telemetry)
BATCH_WRITTEN = "batch.written"  # body: count, updated, jobs (the updates written)
JOBS_CLAIMED = "jobs.claimed"  # body: queue, jobs (one claim's jobs, now running here)
DB_ERROR = "db.error"  # body: operation (claim, heartbeat, cancel_check, write, listen), error
# Upstream Chancy's names, for `Hub.wait_for` and plugins; body: worker (and queue, executor).
WORKER_STARTED = "worker.started"  # body: worker
WORKER_STOPPED = "worker.stopped"  # body: worker (running jobs all finished)
WORKER_SHUTDOWN_TIMEOUT = "worker.shutdown_timeout"  # body: worker (some were put back)
QUEUE_STARTED = "worker.queue.started"  # body: queue, executor, worker
QUEUE_UPDATED = "worker.queue.updated"  # body: queue (the new settings), previous, worker
QUEUE_REMOVED = "worker.queue.removed"  # body: queue, executor, worker
QUEUE_FULL = "worker.queue.full"  # body: queue, executor, worker (no free slot for more)
