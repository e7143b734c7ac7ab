"""The Worker: the actor set that claims and runs jobs, on asyncio or trio.

A worker runs, in one anyio task group: the outgoing batcher, the notification listener (when
the app has notifications on), the heartbeat, the queue watcher (which runs one group per queue:
its executor and its fetcher), every plugin of the app, and, when asked, the signal handler.

Embedding: `async with Worker(chancy) as worker:` or `await task_group.start(worker.run)`.
`stop()` is the graceful path: fetchers stop claiming, running jobs get up to
`shutdown_timeout` seconds, updates are flushed, and whatever still runs is put back to pending
(its attempt not counted). Cancelling `run()` from outside is an immediate stop: running jobs
are cancelled and put back, and updates are flushed (shielded, bounded) before it returns.

Plugins: each plugin's `run(worker, chancy, task_status=...)` is started in the worker's task
group, `leader_only` plugins included: those wait for `worker.is_leader` themselves. A plugin
that raises is logged and restarted with backoff; it never stops the worker.

Claiming: each queue's fetcher claims at most its executor's `free_slots()` in one statement;
the async and threaded executors add an adaptive prefetch for very short jobs (see
`AsyncExecutor.free_slots`), while never running more than `concurrency` jobs at once.
Job updates go through the outgoing batcher (`outgoing`, `send_outgoing_interval`).

Retries: a failed job with attempts left is retried after
`chancy.executors.base.DEFAULT_RETRY_DELAY` (1 s) unless a plugin's `on_job_completed` sets
another `scheduled_at` (the retry plugin does, with backoff).

Observability: `Worker(..., http="127.0.0.1:9464")` adds an actor serving `/healthz`,
`/readyz` and Prometheus `/metrics` (chancy.health, chancy.metrics; docs/metrics.md);
`http_token` guards it when bound off loopback.

Identity: a job's `taken_by` is `"{worker_id}:{incarnation}"`, the incarnation being a nonce
made for each Worker object, so a restarted worker reusing its `worker_id` is a new holder and
the writes of its previous incarnation change nothing.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import secrets
import signal
import socket
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import psycopg
import sniffio

from chancy._db import Conn, _AsyncConn, _ThreadConn, dumps
from chancy._sql import (
    announce_worker_query,
    claim_query,
    event,
    rate_limit_use_query,
    rate_limit_window_query,
    read_job,
    release_running_query,
    remove_worker_query,
)
from chancy.actors.batcher import Batcher, Outbox
from chancy.actors.heartbeat import Heartbeat
from chancy.actors.listener import Listener
from chancy.actors.queue_watcher import QueueWatcher
from chancy.errors import MigrationsNeededError
from chancy.events import (
    JOB_CANCELLED,
    WORKER_SHUTDOWN_TIMEOUT,
    WORKER_STARTED,
    WORKER_STOPPED,
    Flag,
    HubEvent,
)
from chancy.hub import Hub

if TYPE_CHECKING:
    from chancy.allowlist import AllowList
    from chancy.app import Chancy
    from chancy.executors.base import Executor
    from chancy.health import HealthServer
    from chancy.job import QueuedJob
    from chancy.plugin import Plugin
    from chancy.queue import Queue

#: Seconds the final flush of updates may take when stopping.
FLUSH_TIMEOUT = 10.0


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"Worker.{name}: expected a number of seconds > 0, got {value!r}")
    return value


def _as_conn(conn: Conn | psycopg.AsyncConnection | psycopg.Connection) -> Conn:
    """Accept Chancy's `Conn` or a plain psycopg connection (as the reference API shows)."""
    if isinstance(conn, Conn):
        return conn
    if isinstance(conn, psycopg.AsyncConnection):
        return _AsyncConn(conn)
    if isinstance(conn, psycopg.Connection):
        return _ThreadConn(conn)
    raise TypeError(f"expected a database connection, got {type(conn).__name__}")


#: A `QueuedJob` from a `claim_query` row (see `chancy._sql.read_job`).
job_from_claim_row = read_job


def _in_claim_order(rows: list[tuple[Any, ...]]) -> list[QueuedJob]:
    """Jobs in the order they were picked (RETURNING does not keep it): priority, then due
    time, then id."""
    jobs = [job_from_claim_row(row) for row in rows]
    jobs.sort(key=lambda job: (-job.priority, job.scheduled_at, job.id))
    return jobs


class _StartedProxy:
    """Records whether a plugin called `task_status.started()`."""

    def __init__(self, task_status: anyio.abc.TaskStatus[Any]) -> None:
        self.task_status = task_status
        self.called = False

    def started(self, value: Any = None) -> None:
        if not self.called:
            self.called = True
            self.task_status.started(value)


class Worker:
    """Polls queues for jobs and runs them, runs plugins and announces itself to the cluster.

    Start it with `async with Worker(chancy) as worker: await worker.wait_for_shutdown()`, or
    embed it with `await task_group.start(worker.run)` (asyncio or trio).
    """

    def __init__(
        self,
        chancy: Chancy,
        *,
        worker_id: str | None = None,
        heartbeat_poll_interval: int = 30,
        heartbeat_timeout: int = 90,
        queue_change_poll_interval: int = 10,
        shutdown_timeout: int = 30,
        tags: set[str] | None = None,
        register_signal_handlers: bool = True,
        allowed_functions: AllowList | None = None,
        http: str | None = None,
        http_token: str | None = None,
    ) -> None:
        if worker_id is not None and (not isinstance(worker_id, str) or not worker_id):
            raise ValueError("Worker.worker_id: expected a non-empty string")
        if tags is not None and (
            isinstance(tags, str) or not all(isinstance(t, str) for t in tags)
        ):
            raise ValueError("Worker.tags: expected a set of strings")
        #: The Chancy application that the worker is associated with.
        self.chancy = chancy
        #: The ID of the worker, which must be globally unique.
        self.worker_id: str = worker_id or str(uuid.uuid4())
        #: A nonce of this Worker object: a restarted worker is a new incarnation.
        self.incarnation = secrets.token_hex(6)
        #: What this worker writes to a job's `taken_by`.
        self.taken_by = f"{self.worker_id}:{self.incarnation}"
        # Operators see who holds which connection in pg_stat_activity.
        chancy.db.name_connections(f"chancy-{self.worker_id}")
        #: The number of seconds between heartbeat poll intervals.
        self.heartbeat_poll_interval = _positive("heartbeat_poll_interval", heartbeat_poll_interval)
        #: Seconds without a heartbeat after which a worker is considered gone.
        self.heartbeat_timeout = _positive("heartbeat_timeout", heartbeat_timeout)
        if self.heartbeat_timeout <= self.heartbeat_poll_interval:
            raise ValueError(
                f"Worker.heartbeat_timeout ({heartbeat_timeout}) must be longer than "
                f"heartbeat_poll_interval ({heartbeat_poll_interval}), or the worker would "
                "expire between its own heartbeats"
            )
        #: How frequently to check for changes to the queues this worker should process.
        self.queue_change_poll_interval = _positive(
            "queue_change_poll_interval", queue_change_poll_interval
        )
        #: Seconds running jobs get to finish on a graceful stop.
        self.shutdown_timeout = _positive("shutdown_timeout", shutdown_timeout)
        #: Opt-in: only job functions this allows are imported and run (see chancy.allowlist).
        self.allowed_functions = allowed_functions
        #: Whether to register SIGTERM/SIGINT handlers while running.
        self.register_signal_handlers = register_signal_handlers
        #: Minimum seconds between the starts of two writes of outgoing updates; 0 (the default)
        #: writes at once when no write is in flight (see `chancy.actors.batcher`).
        self.send_outgoing_interval: float = 0.0
        self.log = chancy.log
        self._extra_tags = set(tags or ())
        #: An event hub with cluster and local telemetry, useful for plugins.
        self.hub = Hub(self.log)
        #: Set while this worker is the leader (set and cleared by a leadership plugin).
        self.is_leader = Flag()
        #: Set when the worker is shutting down because it received a signal.
        self.shutdown_event = Flag()
        #: A queue of job updates waiting to be sent to the database.
        self.outgoing = Outbox()
        #: The task group of the worker's actors while it runs.
        self.manager: anyio.abc.TaskGroup | None = None
        self.batcher: Batcher | None = None
        self.heartbeat: Heartbeat | None = None
        self.listener: Listener | None = None
        self.watcher: QueueWatcher | None = None
        self._executors: dict[str, Executor] = {}
        #: How many jobs this worker claimed so far (telemetry).
        self.jobs_claimed = 0
        self._stop_requested = Flag()
        self._force = Flag()
        self._started = Flag()
        self._stopped = Flag()
        self._running = False
        self._clean = True
        self._own_tg: Any = None
        self._entered_in: Any = None  # the trio task that entered `async with`
        self._background: Any = None
        self._cancel_send: Any = None
        #: The side HTTP port (`/healthz`, `/readyz`, `/metrics`) when `http="host:port"` is
        #: given; `http_token` guards it off loopback (see chancy.health).
        self.http: HealthServer | None = None
        if http is not None:
            from chancy.health import HealthServer

            self.http = HealthServer(self, http, token=http_token)

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id!r}>"

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Worker:
        """Start the worker; leaving the block stops it gracefully.

        On asyncio the actors run in a task of their own (as with `start()`), so the block may
        be entered in one task and left in another (a pytest-asyncio fixture does that). On trio
        they run in a task group entered here, so enter and leave in the same task.
        """
        if self._own_tg is not None or self._running:
            raise RuntimeError("this worker is already running")
        if sniffio.current_async_library() != "trio":
            await self.start()
            return self
        await self._check_schema()
        import trio

        self._entered_in = trio.lowlevel.current_task()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            await tg.start(self.run)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await tg.__aexit__(None, None, None)
            raise
        self._own_tg = tg
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        tg, self._own_tg = self._own_tg, None
        if tg is None:  # asyncio: the worker runs as a background task
            import asyncio

            task, self._background = self._background, None
            try:
                await self.stop()
            except BaseException:
                if task is not None:
                    task.cancel()
                    with anyio.CancelScope(shield=True):
                        await asyncio.wait([task])
                raise
            if task is not None:
                await asyncio.wait([task])
            return
        import trio

        here, entered = trio.lowlevel.current_task(), self._entered_in
        if here is not entered:
            self._own_tg = tg  # still the entering task's to leave
            raise RuntimeError(
                f"this Worker was entered in trio task {entered.name!r} and is being left in "
                f"{here.name!r}: on trio `async with Worker(...)` must begin and end in the same "
                "task (its actors run in a nursery of that task). Leave it where you entered "
                "it, or run it with `await nursery.start(worker.run)` and `await worker.stop()`"
                ", which may be called from any task"
            )
        try:
            await self.stop()
        finally:
            await tg.__aexit__(None, None, None)

    async def start(self) -> None:
        """Start the worker in the background and return once it is running.

        The worker runs as a task of its own (an asyncio task, or a trio system task) until
        `stop()`, a signal, or the end of the event loop. Prefer `async with Worker(...)` or
        `await task_group.start(worker.run)`, which keep it inside your task structure.
        """
        if self._running:
            raise RuntimeError("this worker is already running")
        await self._check_schema()
        ready = anyio.Event()
        failure: list[BaseException] = []

        class _Status:
            def started(self, value: object = None) -> None:
                ready.set()

        async def main() -> None:
            try:
                await self.run(task_status=_Status())
            except BaseException as exc:  # a background task has no one to raise to
                if not ready.is_set():
                    failure.append(exc)
                elif not isinstance(exc, anyio.get_cancelled_exc_class()):
                    self.log.exception("worker %s crashed", self.worker_id)
            finally:
                ready.set()

        if sniffio.current_async_library() == "trio":
            import trio

            trio.lowlevel.spawn_system_task(main)
        else:
            import asyncio

            self._background = asyncio.get_running_loop().create_task(main())
        await ready.wait()
        if failure:
            raise failure[0]

    async def stop(self) -> bool:
        """Stop gracefully; False if running jobs had to be cut off after `shutdown_timeout`."""
        if self._running:
            self._stop_requested.set()
            await self._stopped.wait()
        return self._clean

    async def wait_for_shutdown(self) -> None:
        """Wait until the worker is stopped (by `stop()`, a signal or cancellation)."""
        await self._stopped.wait()

    async def _check_schema(self) -> None:
        versions = await self.chancy.schema_versions()
        behind = {name: v for name, v in versions.items() if v[0] < v[1]}
        if behind:
            detail = ", ".join(f"{name} at version {a} of {b}" for name, (a, b) in behind.items())
            raise MigrationsNeededError(
                f"the database (prefix {self.chancy.prefix!r}) needs migrating ({detail}): run "
                "`await chancy.migrate()` or `chancy --app module:attr misc migrate` first"
            )

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the worker until `stop()`, a signal, or cancellation; `task_group.start(run)`
        returns once every actor is up."""
        if self._running:
            raise RuntimeError("this worker is already running")
        await self._check_schema()
        self._running = True
        self._stop_requested.clear()
        self._force.clear()
        self._stopped.clear()
        self.shutdown_event.clear()
        self._clean = True
        self.batcher = Batcher(self)
        self.heartbeat = Heartbeat(self)
        self.watcher = QueueWatcher(self)
        self.listener = Listener(self) if self.chancy.notifications else None
        cancel_send, cancel_receive = anyio.create_memory_object_stream[str](math.inf)
        self._cancel_send = cancel_send
        off = self.hub.on(JOB_CANCELLED, self._on_cancel_event)
        try:
            async with anyio.create_task_group() as tg:
                self.manager = tg
                await tg.start(self.batcher.run)
                if self.http is not None:
                    await tg.start(self.http.run)
                tg.start_soon(self._canceller, cancel_receive)
                if self.listener is not None:
                    await tg.start(self.listener.run)
                await tg.start(self.heartbeat.run)
                await tg.start(self.watcher.run)
                for plugin in self.chancy.plugins:
                    await tg.start(self._run_plugin, plugin)
                if self.register_signal_handlers:
                    await tg.start(self._signals)
                self._started.set()
                self.log.info(
                    "worker %s started (queues: %s)",
                    self.worker_id,
                    ", ".join(self.watcher.queue_names) or "none yet",
                )
                task_status.started()
                self.hub.emit(WORKER_STARTED, worker=self)
                await self._stop_requested.wait()
                self.log.info("worker %s stopping", self.worker_id)
                self._clean = await self.watcher.stop_all(self.shutdown_timeout)
                tg.cancel_scope.cancel()
        finally:
            off()
            cancel_send.close()
            with anyio.CancelScope(shield=True):
                await self._final_cleanup()
            self.manager = None
            self._running = False
            self._started.clear()
            self._stopped.set()
            self.hub.emit(WORKER_STOPPED if self._clean else WORKER_SHUTDOWN_TIMEOUT, worker=self)

    async def _final_cleanup(self) -> None:
        """Release what the queue runners still hold, flush updates, put back any job still
        held by this worker and leave the cluster (shielded, bounded)."""
        for executor in list(self._executors.values()):
            executor.release_unfinished()
        with anyio.move_on_after(FLUSH_TIMEOUT) as scope:
            flushed = await self.batcher.flush(timeout=FLUSH_TIMEOUT) if self.batcher else True
            if not flushed:
                self.log.error(
                    "worker %s: %d job updates could not be written before exiting; their jobs"
                    " will be recovered as held by a dead worker",
                    self.worker_id,
                    len(self.outgoing),
                )
                return
            try:
                async with self.chancy.db.connection() as conn:
                    rows = await conn.fetchall(
                        release_running_query(self.chancy.tables), {"taken_by": self.taken_by}
                    )
                    await conn.execute(
                        remove_worker_query(self.chancy.tables),
                        {"worker_id": self.worker_id, "incarnation": self.incarnation},
                    )
                if rows:
                    self.log.info("put %d running jobs back to pending", len(rows))
            except Exception as exc:
                self.log.error("worker %s: could not release its jobs: %s", self.worker_id, exc)
        if scope.cancelled_caught:
            self.log.error("worker %s: the final flush timed out", self.worker_id)

    async def _run_plugin(
        self, plugin: Plugin, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        proxy = _StartedProxy(task_status)
        delay = 1.0
        while True:
            try:
                await plugin.run(self, self.chancy, task_status=proxy)
                proxy.started()
                return
            except Exception:
                self.log.exception(
                    "plugin %s failed; restarting it in %.0f s", plugin.identifier, delay
                )
                proxy.started()
                await anyio.sleep(delay)
                delay = min(delay * 2, 60.0)

    def _on_cancel_event(self, event: HubEvent) -> None:
        job_id = event.body.get("id")
        if job_id and self._cancel_send is not None:
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._cancel_send.send_nowait(str(job_id))

    async def _canceller(self, receive: Any) -> None:
        async with receive:
            async for job_id in receive:
                for executor in list(self._executors.values()):
                    if job_id in executor.running:
                        self.log.info("cancelling job %s", job_id)
                        try:
                            await executor.cancel(job_id)
                        except Exception:
                            self.log.exception("cancelling job %s failed", job_id)

    async def _signals(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                task_status.started()
                async for signum in signals:
                    await self.on_signal(signum)
        except (ValueError, RuntimeError, NotImplementedError) as exc:
            self.log.warning("worker %s: signal handlers not registered: %s", self.worker_id, exc)
            task_status.started()

    async def on_signal(self, signum: int) -> None:
        """First SIGTERM/SIGINT: graceful shutdown; a second one: stop at once."""
        if signum not in (signal.SIGTERM, signal.SIGINT):
            return
        name = signal.Signals(signum).name
        if not self.shutdown_event.is_set():
            self.log.info(
                "received %s: shutting down gracefully (up to %g s; send it again to stop now)",
                name,
                self.shutdown_timeout,
            )
            self.shutdown_event.set()
            self._stop_requested.set()
        else:
            self.log.warning("received %s again: stopping now", name)
            self._force.set()

    # -- the cluster -------------------------------------------------------------------------

    def worker_tags(self) -> set[str]:
        """The tags of this worker: `*`, hostname=, worker_id=, python=, arch=, os= and extras."""
        return {
            "*",
            f"hostname={socket.gethostname()}",
            f"worker_id={self.worker_id}",
            f"python={platform.python_version()}",
            f"arch={platform.machine()}",
            f"os={platform.system().lower()}",
            *self._extra_tags,
        }

    async def announce_worker(self, conn: Conn) -> None:
        """Insert this worker into the workers table, or refresh its `last_seen`."""
        conn = _as_conn(conn)
        tables = self.chancy.tables
        status: dict[str, dict[str, Any]] = dict(self.watcher.queue_status if self.watcher else {})
        children = await self._children_info()
        for name, info in children.items():
            status[name] = {**status.get(name, {"status": "running"}), "children": info}
        row = await conn.fetchone(
            announce_worker_query(tables),
            {
                "worker_id": self.worker_id,
                "incarnation": self.incarnation,
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "tags": sorted(self.worker_tags()),
                "queues": self.watcher.queue_names if self.watcher else [],
                "queue_status": dumps(status),
                "timeout": float(self.heartbeat_timeout),
            },
        )
        if row and row[0] and self.chancy.notifications:
            await conn.execute(
                "SELECT pg_notify(%s, %s)",
                (tables.channel, event("worker.announced", w=self.worker_id)),
            )

    async def _children_info(self) -> dict[str, list[dict[str, Any]]]:
        """`{queue: [{pid, jobs_run, job, rss}]}` of the process executors' children (what the
        dashboard shows)."""
        found: dict[str, list[dict[str, Any]]] = {}
        for name, executor in list(self.executors.items()):
            pool = getattr(executor, "pool", None)
            if pool is not None and hasattr(pool, "children_info"):
                found[name] = await pool.children_info()
        return found

    # -- jobs --------------------------------------------------------------------------------

    async def fetch_jobs(self, queue: Queue, conn: Conn, *, up_to: int = 1) -> list[QueuedJob]:
        """Claim up to `up_to` runnable jobs of `queue` for this worker and mark them running.

        Highest priority first, then due time, then push order; only jobs whose `scheduled_at` has come; safe
        to call concurrently (rows locked by another claimer are skipped). A queue with a
        `rate_limit` takes no more than its fixed window (shared by all workers) allows.
        """
        if up_to < 1:
            return []
        conn = _as_conn(conn)
        tables = self.chancy.tables
        params: dict[str, Any] = {"queue": queue.name, "up_to": up_to, "taken_by": self.taken_by}
        if queue.rate_limit is None:
            rows = await conn.fetchall(claim_query(tables), params)
            self.jobs_claimed += len(rows)
            return _in_claim_order(rows)
        async with conn.transaction():
            row = await conn.fetchone(
                rate_limit_window_query(tables),
                {"queue": queue.name, "window": queue.rate_limit_window},
            )
            used = row[0] if row else 0
            allowed = min(up_to, queue.rate_limit - used)
            if allowed <= 0:
                return []
            params["up_to"] = allowed
            rows = await conn.fetchall(claim_query(tables), params)
            if rows:
                await conn.execute(
                    rate_limit_use_query(tables), {"queue": queue.name, "claimed": len(rows)}
                )
        self.jobs_claimed += len(rows)
        return _in_claim_order(rows)

    async def queue_update(self, update: QueuedJob) -> None:
        """Queue a job's new state to be written with the next batch (`send_outgoing_interval`)."""
        self.outgoing.put_nowait(update)

    def queue_update_nowait(self, update: QueuedJob) -> None:
        """`queue_update` without awaiting (the outbox is unbounded)."""
        self.outgoing.put_nowait(update)

    def running_jobs(self) -> list[QueuedJob]:
        """The jobs this worker is running now."""
        return [job for ex in list(self._executors.values()) for job in ex.running.values()]

    @property
    def executors(self) -> dict[str, Executor]:
        """The executors of the queues this worker runs now, by queue name."""
        return dict(self._executors)


__all__ = ["Worker"]
