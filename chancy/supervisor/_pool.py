"""A pool of warm child worker processes that run one job each at a time, under limits."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import msgspec

from chancy.errors import (
    ChildStartError,
    JobCancelled,
    MemoryLimitExceeded,
    PoolClosed,
    TimeLimitExceeded,
    WorkerProcessDied,
)
from chancy.wire import (
    FRAME_TIMEOUT,
    MAX_FRAME_SIZE,
    ErrorInfo,
    JobDone,
    ProtocolError,
    RunJob,
    Started,
    StopJob,
)

from ._cgroup import Cgroups
from ._process import ChildProcess, ForkServer, Watchdog, describe_returncode, thread_limiter

if TYPE_CHECKING:
    import types
    from collections.abc import AsyncIterator, Mapping

MiB = 1024 * 1024
#: How children are started: ``"forkserver"`` (forked by a clean template process the pool
#: starts once, see :mod:`chancy.supervisor._forkserver`) or ``"spawn"`` (a fresh interpreter
#: each). ``CHANCY_START_METHOD`` overrides the default for every pool of the process.
START_METHODS = ("forkserver", "spawn")
#: After the fork server failed to (re)start, children are spawned for this many seconds.
FORKSERVER_RETRY = 30.0


def default_start_method() -> str:
    method = os.environ.get("CHANCY_START_METHOD", "").strip().lower()
    return method if method in START_METHODS else "forkserver"


#: How many children a job is handed to before it is given up as unstartable.
START_TRIES = 3

#: Errors that mean "the channel to this child is gone".
_CHANNEL_GONE = (
    anyio.EndOfStream,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    OSError,
)


@dataclass(frozen=True)
class Outcome:
    """How one job run in a child ended.

    ``error`` is set unless ``ok``; ``meta`` is the job's meta after the run (``None`` when
    the child died before reporting); ``result`` the job's return value as the child encoded
    it (JSON bytes, not decoded here; ``None`` when it returned None or did not succeed). ``child_exit`` says how the child ended when it did
    so during the job (``"killed by signal SIGSEGV"``, ``"exited with code 3"``).
    ``limit_detected_at``/``tree_gone_at`` (``time.time()``) time a memory-limit kill.
    """

    job_id: str
    ok: bool
    error: ErrorInfo | None = None
    meta: dict[str, Any] | None = None
    child_exit: str | None = None
    pid: int | None = None
    duration: float = 0.0
    limit_detected_at: float | None = None
    tree_gone_at: float | None = None
    result: bytes | None = None

    @property
    def error_text(self) -> str | None:
        """The text to store as the job error's ``traceback`` (``ErrorT``)."""
        if self.error is None:
            return None
        return self.error.traceback or f"{self.error.type}: {self.error.message}"


def _error(type_: str, message: str, details: str = "") -> ErrorInfo:
    """An error as data; *details* (e.g. a faulthandler dump) go into the traceback before
    the ``Type: message`` line, which stays last as in a Python traceback."""
    text = f"{type_}: {message}"
    details = details.rstrip("\n")
    return ErrorInfo(
        type=type_, message=message, traceback=f"{details}\n{text}" if details else text
    )


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


@dataclass(frozen=True)
class _NotStarted:
    """`_run_on`'s answer when the child never acknowledged the job (see `Started`)."""

    reason: str


class _JobId(msgspec.Struct):
    id: str


class _Successor:
    """A child started before the one it replaces retires (see ``ChildPool._foresee``)."""

    def __init__(self) -> None:
        self.ready = anyio.Event()  # spawned (child set) or failed (child None)
        self.taken = anyio.Event()
        self.child: ChildProcess | None = None
        self.dropped = False


class _Slot:
    def __init__(self, index: int) -> None:
        self.index = index
        self.child: ChildProcess | None = None
        self.first_job_at = 0.0  # when its child started its first job
        self.successor: _Successor | None = None
        self.idle = False  # offered (in the free stream), no job on it
        self.respawning: anyio.Event | None = None  # set once an idle child's stand-in is up


class _Running:
    """State of one job while a child runs it (shared by the caller, monitor and cancel)."""

    def __init__(
        self,
        job_id: str,
        child: ChildProcess,
        memory_limit: int | None,
        time_limit: float | None,
        max_result_size: int | None = None,
    ) -> None:
        self.job_id = job_id
        self.child = child
        self.memory_limit = memory_limit
        self.time_limit = time_limit
        self.max_result_size = max_result_size
        self.started = anyio.current_time()
        self.verdict: ErrorInfo | None = None
        self.kill_at: float | None = None
        self.retire = time_limit is not None  # its RLIMIT_CPU cannot be lifted again
        self.detected_at: float | None = None
        self.gone_at: float | None = None
        self.monitored = memory_limit is not None or time_limit is not None
        self.done = False  # the job's answer (or its child's end) is in


class ChildPool:
    """Keeps ``size`` warm children and runs jobs on them, one job per child at a time.

    Works under asyncio and trio. Use it as an async context manager (or ``await
    tg.start(pool.run)``). A child is replaced after ``maximum_jobs_per_worker`` jobs, after
    a job that left its process tree holding more than ``maximum_rss_per_worker`` bytes (a
    leak: checked after each job when set), after a job that had a time limit (see :func:`chancy.supervisor.child.arm_cpu_limit`), when it
    dies, sends a bad frame, is stopped or cancelled, or breaks a limit.

    Limits are enforced from outside by a monitor per busy child with a limit: every
    ``monitor_interval`` seconds (off the event loop) it sums RSS over the child and all its
    descendants; over ``memory_limit`` the whole tree is SIGKILLed at once. Past
    ``time_limit`` the job gets a :class:`~chancy.wire.StopJob` (an exception inside it) and
    the tree is killed ``stop_grace`` seconds later if it has not stopped. A job without
    limits runs unmonitored (its child's death ends the channel, which the pool notices at
    once) until it is cancelled; then a monitor enforces the grace.

    A child's replacement is spawned ahead, while the child runs its last jobs, so that its
    slot does not stay empty for a whole spawn when it is recycled: it starts when the jobs
    the child has left would, at its pace so far, take less than twice a spawn. Until it is
    taken it idles (at most ``spare_linger`` seconds, then it is stopped); it never runs a
    job before its slot's child has retired, so at most ``size`` children are ever busy.
    """

    def __init__(
        self,
        size: int = 1,
        *,
        maximum_jobs_per_worker: int = 100,
        maximum_rss_per_worker: int | None = None,
        initializer: str | None = None,
        monitor_interval: float = 0.05,
        stop_grace: float = 1.0,
        spare_linger: float = 2.0,
        handshake_timeout: float = 60.0,
        shutdown_timeout: float = 3.0,
        sys_path: list[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        max_frame_size: int = MAX_FRAME_SIZE,
        frame_timeout: float = FRAME_TIMEOUT,
        start_timeout: float = 10.0,
        idle_check_interval: float = 0.5,
        private_shm: bool = True,
        start_method: str | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if start_method is None:
            start_method = default_start_method()
        if start_method not in START_METHODS:
            raise ValueError(f"start_method must be one of {', '.join(START_METHODS)}")
        if size < 1:
            raise ValueError("size must be at least 1")
        if maximum_jobs_per_worker < 1:
            raise ValueError("maximum_jobs_per_worker must be at least 1")
        if maximum_rss_per_worker is not None and (
            isinstance(maximum_rss_per_worker, bool)
            or not isinstance(maximum_rss_per_worker, int)
            or maximum_rss_per_worker < 1
        ):
            raise ValueError("maximum_rss_per_worker must be a positive number of bytes or None")
        self.size = size
        self.maximum_jobs_per_worker = maximum_jobs_per_worker
        #: A child whose tree holds more than this many bytes after a job is replaced.
        self.maximum_rss_per_worker = maximum_rss_per_worker
        self.initializer = initializer
        self.monitor_interval = monitor_interval
        self.stop_grace = stop_grace
        self.spare_linger = spare_linger
        self._spawn_seconds = 0.2  # running estimate of how long a spawn takes
        self.handshake_timeout = handshake_timeout
        self.shutdown_timeout = shutdown_timeout
        self.sys_path = sys_path
        self.extra_env = extra_env
        self.max_frame_size = max_frame_size
        self.frame_timeout = frame_timeout
        self.start_timeout = start_timeout
        self.idle_check_interval = idle_check_interval
        #: Each child gets a /dev/shm of its own where it may (root), freed with it.
        self.private_shm = private_shm
        self.logger = logger or logging.getLogger("chancy.supervisor")
        #: "forkserver" or "spawn" (see `START_METHODS`).
        self.start_method = start_method
        self._forkserver: ForkServer | None = None
        self._forkserver_lock = anyio.Lock()
        self._forkserver_failed_at = -math.inf
        self._slots = [_Slot(i) for i in range(size)]
        self._free_send, self._free_receive = anyio.create_memory_object_stream[_Slot](size)
        self._running: dict[str, _Running] = {}
        # Jobs accepted by run_job but not yet in a child -> a cancel reason, if cancelled.
        self._waiting: dict[str, str | None] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing = False
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._used = False
        self._watchdog = Watchdog(self.logger)
        #: Children replaced, by reason: "recycled" (maximum_jobs_per_worker), "rss" (over
        #: maximum_rss_per_worker after a job), "limit" (a memory or time limit), "cancelled",
        #: "died" (busy or idle), "stuck" (never took a job).
        self.restarts: collections.Counter[str] = collections.Counter()
        #: Where children get cgroups of their own (None: tree walking and sessions only).
        self.cgroups: Cgroups | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[ChildPool]:
        self._watchdog.start()
        self.cgroups = await anyio.to_thread.run_sync(Cgroups.detect)
        self.logger.debug(
            "child processes are contained by %s",
            self.cgroups.mechanism if self.cgroups else "their session and process tree",
        )
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._closing = False
                if self.start_method == "forkserver":
                    await self._fork_server()
                for slot in self._slots:
                    tg.start_soon(self._warm, slot)
                tg.start_soon(self._watch_idle)
                try:
                    yield self
                finally:
                    self._closing = True
                    with anyio.CancelScope(shield=True):
                        await self._stop_children()
                        if self._forkserver is not None:
                            await self._forkserver.close()
                    tg.cancel_scope.cancel()
        finally:
            if self._forkserver is not None:
                await self._forkserver.close()
                self._forkserver = None
            await self._watchdog.close()
            if self.cgroups is not None:
                self.cgroups.close()
        self._tg = None
        self._free_send.close()
        self._free_receive.close()

    async def __aenter__(self) -> ChildPool:
        if self._used:
            raise RuntimeError("a ChildPool runs once; create a new one")
        self._used = True
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(self._lifespan())
        self._exit_stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        stack, self._exit_stack = self._exit_stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Actor form: start, report started, run until cancelled, stop every child."""
        async with self:
            task_status.started()
            await anyio.sleep_forever()

    async def _stop_children(self) -> None:
        async with anyio.create_task_group() as tg:
            for slot in self._slots:
                successor, slot.successor = slot.successor, None
                if successor is not None and successor.child is not None:
                    tg.start_soon(successor.child.kill)  # spawning ones see _closing
                child, slot.child = slot.child, None
                if child is None:
                    continue
                if any(r.child is child for r in self._running.values()):
                    tg.start_soon(child.kill)
                else:
                    tg.start_soon(self._stop, child)
            for running in list(self._running.values()):
                tg.start_soon(running.child.kill)

    async def _stop(self, child: ChildProcess) -> None:
        await child.stop(ask_timeout=self.shutdown_timeout, term_timeout=self.shutdown_timeout)

    # -- children ----------------------------------------------------------------------

    async def _fork_server(self) -> ForkServer | None:
        """The running fork server, started (again) if need be; None: spawn this child."""
        server = self._forkserver
        if server is not None and not server.gone:
            return server
        if self._tg is None or self._closing:
            return None
        async with self._forkserver_lock:
            server = self._forkserver
            if server is not None and not server.gone:
                return server
            if anyio.current_time() - self._forkserver_failed_at < FORKSERVER_RETRY:
                return None
            if server is not None:
                self._forkserver = None
                await server.close()
                self._watchdog.remove(server.pid or 0)
                self.logger.warning("starting a new fork server for the child workers")
            server = ForkServer(
                self.logger,
                sys_path=self.sys_path,
                extra_env=self.extra_env,
                private_shm=self.private_shm,
                timeout=min(self.handshake_timeout, 30.0),
            )
            try:
                await server.start(self._tg)
            except (ChildStartError, OSError) as exc:
                self._forkserver_failed_at = anyio.current_time()
                self.logger.error(
                    "could not start a fork server (%s); starting child workers as fresh "
                    "interpreters for the next %.0f s",
                    exc,
                    FORKSERVER_RETRY,
                )
                return None
            if server.pid is not None:
                self._watchdog.add(server.pid)
            self._forkserver = server
            return server

    async def _spawn(self) -> ChildProcess:
        if self._tg is None:
            raise PoolClosed("the pool is not running")
        began = anyio.current_time()
        server = await self._fork_server() if self.start_method == "forkserver" else None
        try:
            child = await self._start_child(server)
        except (ChildStartError, OSError):
            if server is None or not server.gone:
                raise  # the child's own failure (its handshake, its initializer)
            # The fork server died under the request: once more, from a new one (or fresh).
            child = await self._start_child(await self._fork_server())
        self._watchdog.add(child.pid)
        child.on_gone = self._watchdog.remove
        self._spawn_seconds = 0.7 * self._spawn_seconds + 0.3 * (anyio.current_time() - began)
        return child

    async def _start_child(self, server: ForkServer | None) -> ChildProcess:
        assert self._tg is not None
        return await ChildProcess.spawn(
            self._tg,
            sys_path=self.sys_path,
            initializer=self.initializer,
            extra_env=self.extra_env,
            handshake_timeout=self.handshake_timeout,
            max_frame_size=self.max_frame_size,
            frame_timeout=self.frame_timeout,
            logger=self.logger,
            cgroups=self.cgroups,
            private_shm=self.private_shm,
            forkserver=server,
        )

    async def _warm(self, slot: _Slot) -> None:
        """Start a child for *slot* in the background, then offer the slot."""
        try:
            if not self._closing:
                slot.child = await self._spawn()
        except (ChildStartError, OSError) as exc:
            self.logger.error("could not start a child worker: %s", exc)
        finally:
            if self._closing and slot.child is not None:
                child, slot.child = slot.child, None
                with anyio.CancelScope(shield=True):
                    await child.kill()
            self._offer(slot)

    def _offer(self, slot: _Slot) -> None:
        slot.idle = True
        self._free_send.send_nowait(slot)

    async def _watch_idle(self) -> None:
        """Notice an idle child that died (or sends when it should not) and replace it.

        Within ``idle_check_interval`` of its death the child is reaped (no zombie), its
        tree swept, and a fresh child takes its slot, before any job is handed to it.
        """
        while True:
            await anyio.sleep(self.idle_check_interval)
            for slot in self._slots:
                child = slot.child
                if child is None or not slot.idle or slot.respawning is not None:
                    continue
                code = child.returncode
                if code is not None:
                    why = describe_returncode(code)
                elif child.has_input():
                    why = "sent data while idle"
                else:
                    continue
                self.logger.warning("idle worker process %d %s; replacing it", child.pid, why)
                self.restarts["died"] += 1
                slot.child = None
                done = slot.respawning = anyio.Event()
                assert self._tg is not None
                self._tg.start_soon(self._respawn, slot, child, done)

    async def _respawn(self, slot: _Slot, dead: ChildProcess, done: anyio.Event) -> None:
        try:
            await dead.kill()
            if not self._closing:
                slot.child = await self._spawn()
        except (ChildStartError, OSError) as exc:
            self.logger.error("could not start a child worker: %s", exc)
        finally:
            slot.respawning = None
            done.set()

    def _retire(self, slot: _Slot) -> None:
        """Stop *slot*'s child in the background; its successor (or a new child) takes over."""
        child, slot.child = slot.child, None
        successor, slot.successor = slot.successor, None
        if self._closing or self._tg is None:
            if self._tg is not None:
                if child is not None:
                    self._tg.start_soon(child.kill)
                if successor is not None and successor.child is not None:
                    self._tg.start_soon(successor.child.kill)
            self._offer(slot)
            return
        if child is not None:
            self._tg.start_soon(self._stop, child)
        if successor is not None:
            self._tg.start_soon(self._take, slot, successor)
        else:
            self._tg.start_soon(self._warm, slot)

    def _foresee(self, slot: _Slot, child: ChildProcess) -> None:
        """Start spawning *slot*'s next child if *child* is about to be recycled."""
        if slot.successor is not None or self._closing or self._tg is None:
            return
        now = anyio.current_time()
        if child.jobs_run == 0:
            slot.first_job_at = now
        left = self.maximum_jobs_per_worker - child.jobs_run  # this job included
        if left > 1:
            if child.jobs_run == 0:
                return
            pace = (now - slot.first_job_at) / child.jobs_run
            if left * pace > 2 * self._spawn_seconds:
                return
        successor = slot.successor = _Successor()
        self._tg.start_soon(self._prepare, slot, successor)

    async def _prepare(self, slot: _Slot, successor: _Successor) -> None:
        """Spawn a successor; stop it if its slot does not take it within ``spare_linger``."""
        try:
            if not self._closing:
                successor.child = await self._spawn()
        except (ChildStartError, OSError) as exc:
            self.logger.error("could not start a child worker: %s", exc)
        finally:
            successor.ready.set()
        child = successor.child
        if child is None:
            return
        try:
            if not self._closing:
                with anyio.move_on_after(self.spare_linger):
                    await successor.taken.wait()
        finally:
            if not successor.taken.is_set():
                successor.dropped = True
                successor.child = None
                if slot.successor is successor:
                    slot.successor = None
                with anyio.CancelScope(shield=True):
                    if self._closing:
                        await child.kill()
                    else:
                        await self._stop(child)

    async def _take(self, slot: _Slot, successor: _Successor) -> None:
        """Give *slot* its successor once spawned (or warm a new child if that failed)."""
        await successor.ready.wait()
        child = successor.child
        if child is None or successor.dropped or self._closing:
            await self._warm(slot)
            return
        successor.taken.set()
        slot.child = child
        self._offer(slot)

    @property
    def pids(self) -> list[int]:
        """Pids of the children currently held by the pool."""
        return [s.child.pid for s in self._slots if s.child is not None]

    @property
    def running_jobs(self) -> list[str]:
        return list(self._running)

    async def children_info(self) -> list[dict[str, Any]]:
        """Each child the pool holds now: its `pid`, how many jobs it has finished
        (`jobs_run`), the id of the job it runs (`job`, None when idle) and the memory its
        process tree holds (`rss`, as the limit monitor measures it; None if it just died).
        The snapshot is taken on the event loop, the measuring in one worker thread."""
        running = {id(r.child): job_id for job_id, r in self._running.items()}
        children = [slot.child for slot in self._slots if slot.child is not None]
        entries: list[dict[str, Any]] = [
            {"pid": child.pid, "jobs_run": child.jobs_run, "job": running.get(id(child))}
            for child in children
        ]

        def measure() -> None:
            for entry, child in zip(entries, children, strict=True):
                try:
                    entry["rss"] = child.memory()
                except OSError:  # its cgroup went with it, between the snapshot and the read
                    entry["rss"] = None

        if entries:
            await anyio.to_thread.run_sync(measure, limiter=thread_limiter())
        return entries

    def free_slots(self) -> int:
        return self.size - len(self._running)

    # -- jobs --------------------------------------------------------------------------

    async def run_job(
        self,
        job: bytes,
        *,
        job_id: str | None = None,
        memory_limit: int | None = None,
        time_limit: float | None = None,
        max_result_size: int | None = None,
    ) -> Outcome:
        """Run the packed ``QueuedJob`` *job* (JSON bytes) in a child and wait for its outcome.

        *memory_limit* is in bytes, *time_limit* in seconds, *max_result_size* in bytes of
        JSON (a larger return value fails the job in the child). Never raises for anything
        the job or its child does; a cancelled caller gets its child's tree killed.
        """
        if self._tg is None or self._closing:
            raise PoolClosed("the pool is not running")
        if job_id is None:
            job_id = msgspec.json.decode(job, type=_JobId).id
        self._waiting[job_id] = None
        try:
            slot = await self._free_receive.receive()
        except BaseException:
            self._waiting.pop(job_id, None)
            raise
        slot.idle = False
        retire = True
        try:
            if slot.respawning is not None:  # its idle child died: a stand-in is coming
                await slot.respawning.wait()
            for _ in range(START_TRIES):
                child = slot.child
                if child is None or child.returncode is not None:
                    if child is not None:
                        self._tg.start_soon(child.kill)
                        slot.child = None
                    try:
                        child = slot.child = await self._spawn()
                    except (ChildStartError, OSError) as exc:
                        return Outcome(job_id, False, _error(ChildStartError.__name__, str(exc)))
                cancelled = self._waiting.pop(job_id, None)
                if cancelled is not None:
                    retire = False
                    return Outcome(
                        job_id, False, _error(JobCancelled.__name__, cancelled), pid=child.pid
                    )
                self._foresee(slot, child)
                running = _Running(job_id, child, memory_limit, time_limit, max_result_size)
                self._running[job_id] = running
                try:
                    outcome = await self._run_on(running, job)
                finally:
                    self._running.pop(job_id, None)
                if not isinstance(outcome, _NotStarted):
                    if outcome.child_exit is None:
                        left = await child.sweep()
                        if left:
                            self.logger.warning(
                                "job %s left processes running after it ended (%s); killed",
                                job_id,
                                ", ".join(map(str, left)),
                            )
                    break
                # The child never took the job (dead, or stuck on an earlier job's code): none
                # of the job ran, so it goes to a fresh child without costing an attempt.
                self.logger.warning(
                    "job %s did not start on worker process %d (%s); handing it to a fresh one",
                    job_id,
                    child.pid,
                    outcome.reason,
                )
                slot.child = None
                self._waiting[job_id] = None
                self.restarts["stuck"] += 1
            else:
                return Outcome(
                    job_id,
                    False,
                    _error(
                        ChildStartError.__name__,
                        f"the job did not start on {START_TRIES} worker processes in a row; "
                        f"the last one {outcome.reason}",  # type: ignore[union-attr]
                    ),
                )
            child.jobs_run += 1
            retire = (
                running.retire
                or outcome.child_exit is not None
                or child.jobs_run >= self.maximum_jobs_per_worker
            )
            if retire:
                self.restarts[_restart_reason(running, outcome)] += 1
            elif self.maximum_rss_per_worker is not None:
                rss = await anyio.to_thread.run_sync(child.memory, limiter=thread_limiter())
                if rss > self.maximum_rss_per_worker:
                    retire = True
                    self.restarts["rss"] += 1
                    self.logger.info(
                        "worker process %d holds %d MiB after job %s (over %d MiB): replacing it",
                        child.pid,
                        rss // MiB,
                        job_id,
                        self.maximum_rss_per_worker // MiB,
                    )
            return outcome
        finally:
            self._waiting.pop(job_id, None)
            if retire:
                self._retire(slot)
            else:
                self._offer(slot)

    async def cancel(self, job_id: str, reason: str = "job cancelled") -> bool:
        """Ask the running job to stop (``JobCancelled`` inside it); kill after the grace.

        A job still waiting for a child is not started at all. Returns ``False`` if the pool
        does not hold that job.
        """
        running = self._running.get(job_id)
        if running is None:
            if job_id in self._waiting:
                self._waiting[job_id] = reason
                return True
            return False
        if running.verdict is None:
            running.verdict = _error(JobCancelled.__name__, reason)
        await self._ask_stop(running, reason, "cancelled")
        return True

    async def _ask_stop(self, running: _Running, reason: str, kind: str) -> None:
        running.retire = True
        if running.kill_at is None:
            running.kill_at = anyio.current_time() + self.stop_grace
        if not running.monitored and not running.done and self._tg is not None:
            running.monitored = True  # someone must kill it after the grace
            self._tg.start_soon(self._monitor, running)
        with contextlib.suppress(*_CHANNEL_GONE):
            await running.child.send(StopJob(job_id=running.job_id, reason=reason, kind=kind))

    async def _exchange(
        self, running: _Running, job: bytes
    ) -> tuple[JobDone | None, str | None, bool]:
        """Send the job, wait for its answer: (the answer, or why there is none usable, and
        whether the child acknowledged the job with `Started`)."""
        child = running.child
        started = False
        try:
            message = RunJob(
                job_id=running.job_id,
                job=job,
                time_limit=running.time_limit,
                max_result_size=running.max_result_size,
            )
            child.current_job = running.job_id
            await child.send(message)
            with anyio.move_on_after(self.start_timeout):
                ack = await child.receive()
                started = isinstance(ack, Started) and ack.job_id == running.job_id
                if not started:
                    return None, f"answered {_describe(ack)} instead of starting it", False
            if not started:
                return None, f"did not start it within {_seconds(self.start_timeout)} s", False
            reply = await child.receive()
        except ProtocolError as exc:
            return None, str(exc), started
        except _CHANNEL_GONE:
            return None, None if started else "was gone", started
        finally:
            running.done = True
        if isinstance(reply, JobDone) and reply.job_id == running.job_id:
            return reply, None, True
        return None, f"unexpected message during a job: {_describe(reply)}", True

    async def _run_on(self, running: _Running, job: bytes) -> Outcome | _NotStarted:
        child = running.child
        cgroup = child.cgroup
        limit = running.memory_limit
        if cgroup is None or limit is None:
            return await self._run_on_child(running, job)
        # The kernel's limit, above ours: it acts only if the monitor is late (a spike
        # between two samples), and then the job still ends with a memory-limit error.
        backstop = limit + max(limit // 4, 64 * MiB)
        oom_before = cgroup.oom_kills()
        cgroup.set_memory_max(backstop)
        try:
            outcome = await self._run_on_child(running, job)
        finally:
            if child.returncode is None:
                cgroup.set_memory_max(None)
        if (
            isinstance(outcome, Outcome)
            and outcome.child_exit is not None
            and running.verdict is None
            and cgroup.oom_kills() > oom_before
        ):
            message = (
                f"memory limit exceeded: over {limit // MiB} MiB, the kernel stopped it "
                f"at {backstop // MiB} MiB"
            )
            outcome = dataclasses.replace(
                outcome, error=_error(MemoryLimitExceeded.__name__, message)
            )
        return outcome

    async def _run_on_child(self, running: _Running, job: bytes) -> Outcome | _NotStarted:
        child = running.child
        started = time.monotonic()
        try:
            if running.monitored:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._monitor, running)
                    answer, protocol_error, took = await self._exchange(running, job)
                    tg.cancel_scope.cancel()
            else:
                answer, protocol_error, took = await self._exchange(running, job)
        except BaseException:
            running.retire = True
            await child.kill()
            raise
        duration = time.monotonic() - started
        cancelled = running.verdict is not None and running.verdict.type == JobCancelled.__name__
        if not took and not cancelled:  # a limit it hit was the stuck child's, not this job's
            await child.kill()
            return _NotStarted(protocol_error or "did not start it")
        if answer is not None:
            meta = _decode_meta(answer.meta)
            if running.verdict is not None:  # stopped or over its limit, whatever it says
                error = answer.error if answer.error is not None else running.verdict
                return Outcome(running.job_id, False, error, meta, None, child.pid, duration)
            return Outcome(
                running.job_id,
                answer.ok,
                answer.error,
                meta,
                None,
                child.pid,
                duration,
                result=answer.result if answer.ok else None,
            )
        # The child is gone or unusable: make sure of it, then say why.
        code = await child.kill()
        exit_text = describe_returncode(code) if code is not None else "did not exit"
        if running.verdict is not None:
            error = running.verdict
        elif protocol_error is not None:
            error = _error(
                "ProtocolError", f"worker process {child.pid} sent a bad frame: {protocol_error}"
            )
        else:
            tail = "\n".join(child.output_tail)
            error = _error(
                WorkerProcessDied.__name__,
                f"worker process {child.pid} {exit_text} while running the job",
                f"last output of the worker process:\n{tail}" if tail else "",
            )
        return Outcome(
            running.job_id,
            False,
            error,
            None,
            exit_text,
            child.pid,
            duration,
            running.detected_at,
            running.gone_at,
        )

    async def _monitor(self, running: _Running) -> None:
        """Enforce the job's limits until cancelled or the job ends."""
        child = running.child
        while not running.done:
            if running.memory_limit is not None:
                rss = await anyio.to_thread.run_sync(child.memory, limiter=thread_limiter())
                if rss > running.memory_limit:
                    running.detected_at = time.time()
                    used, limit = rss // MiB, running.memory_limit // MiB
                    message = f"memory limit exceeded: {used} MiB > {limit} MiB"
                    running.verdict = _error(MemoryLimitExceeded.__name__, message)
                    running.retire = True
                    await child.kill()
                    running.gone_at = time.time()
                    return
            now = anyio.current_time()
            wake = now + self.monitor_interval if running.memory_limit is not None else math.inf
            if running.time_limit is not None and running.kill_at is None:
                deadline = running.started + running.time_limit
                if now >= deadline:
                    message = f"time limit exceeded after {_seconds(running.time_limit)} s"
                    running.verdict = _error(TimeLimitExceeded.__name__, message)
                    await self._ask_stop(running, message, "time_limit")
                else:
                    wake = min(wake, deadline)
            if running.kill_at is not None:
                if now >= running.kill_at:
                    self.logger.warning(
                        "job %s did not stop within %.1f s; killing worker process %d",
                        running.job_id,
                        self.stop_grace,
                        child.pid,
                    )
                    await child.kill()
                    return
                wake = min(wake, running.kill_at)
            # cancel() may set kill_at at any time: never sleep longer than one interval.
            wake = min(wake, now + self.monitor_interval)
            await anyio.sleep(max(0.0, wake - anyio.current_time()))


def _restart_reason(running: _Running, outcome: Outcome) -> str:
    error = outcome.error.type if outcome.error is not None else None
    if error in (MemoryLimitExceeded.__name__, TimeLimitExceeded.__name__):
        return "limit"
    if error == JobCancelled.__name__:
        return "cancelled"
    if outcome.child_exit is not None:
        return "died"
    if running.time_limit is not None:
        return "limit"  # a job with a time limit leaves its child a CPU rlimit: never reused
    return "recycled"


def _describe(message: object) -> str:
    text = repr(message)
    return text if len(text) <= 200 else text[:200] + "..."


def _decode_meta(raw: bytes) -> dict[str, Any] | None:
    try:
        meta = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    return meta if isinstance(meta, dict) else None
