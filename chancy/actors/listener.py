"""The notification listener: LISTENs on the app's channel and turns its events into hub events.

Events on the channel (JSON with the kind under "t"): "pushed" (q: queue names) wakes those
queues' fetchers; "queue.changed" (q) makes the queue watcher look again; "job.cancelled" (id)
stops the job if this worker runs it; "job.done" (ids) and "worker.announced" are passed on as
telemetry. A lost connection is reopened with backoff; after reconnecting, every queue is polled
once and the queue watcher refreshes, since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import sniffio
from psycopg import sql

from chancy.events import (
    DB_ERROR,
    JOB_CANCELLED,
    JOBS_DONE,
    LISTENER_CONNECTED,
    QUEUE_CHANGED,
    QUEUE_WAKE,
    WORKER_ANNOUNCED,
)

if TYPE_CHECKING:
    from chancy.worker import Worker

#: Seconds per wait for notifications on a thread-backed connection (trio): short, since a
#: wait in a thread cannot be interrupted and stopping the worker waits for it.
THREAD_WAIT = 0.2
#: Seconds of silence after which the connection is checked with a query.
KEEPALIVE = 5.0


class Listener:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        #: Test hook: how many times the connection was (re)opened.
        self.connections = 0
        #: Whether the LISTEN connection is open now (for readiness and metrics).
        self.connected = False

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        worker = self.worker
        channel = worker.chancy.tables.channel
        started = False
        delay = 0.1
        wait = KEEPALIVE if sniffio.current_async_library() == "asyncio" else THREAD_WAIT
        while True:
            try:
                async with worker.chancy.db.dedicated() as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    reconnect = self.connections > 0
                    self.connections += 1
                    delay = 0.1
                    if reconnect:
                        worker.log.info("listener reconnected; polling every queue once")
                        worker.hub.emit(QUEUE_CHANGED, queue=None)
                        worker.hub.emit(QUEUE_WAKE, queue=None)
                    self.connected = True
                    worker.hub.emit(LISTENER_CONNECTED, reconnect=reconnect)
                    if not started:
                        started = True
                        task_status.started()
                    quiet_since = anyio.current_time()
                    while True:
                        notices = await conn.notifies(timeout=wait)
                        if notices:
                            quiet_since = anyio.current_time()
                            for _channel, payload in notices:
                                self.dispatch(payload)
                        elif anyio.current_time() - quiet_since >= KEEPALIVE:
                            await conn.execute("SELECT 1")
                            quiet_since = anyio.current_time()
            except Exception as exc:
                self.connected = False
                worker.hub.emit(DB_ERROR, operation="listen", error=exc)
                worker.log.warning(
                    "notification listener lost its connection (%s); reconnecting in %.1f s",
                    str(exc).strip() or type(exc).__name__,
                    delay,
                )
                if not started:
                    started = True
                    task_status.started()
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self.connected = False

    def dispatch(self, payload: str) -> None:
        try:
            message: dict[str, Any] = json.loads(payload)
            kind = message.get("t")
        except (ValueError, AttributeError):
            return
        hub = self.worker.hub
        if kind == "pushed":
            queues = message.get("q")
            if queues is None:  # too many to name: every queue looks
                hub.emit(QUEUE_WAKE, queue=None)
            for queue in queues or ():
                hub.emit(QUEUE_WAKE, queue=queue)
        elif kind == "queue.changed":
            hub.emit(QUEUE_CHANGED, queue=message.get("q"))
        elif kind == "job.cancelled":
            hub.emit(JOB_CANCELLED, id=message.get("id"))
        elif kind == "job.done":
            hub.emit(JOBS_DONE, ids=message.get("ids") or [])
        elif kind == "worker.announced":
            hub.emit(WORKER_ANNOUNCED, worker_id=message.get("w"))
