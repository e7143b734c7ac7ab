"""The executor interface: runs a queue's claimed jobs and reports how each one ended.

An executor is an actor of its queue's group in the worker. The fetcher claims at most
`free_slots()` jobs and hands each to `submit()`, which runs the plugins' `on_job_starting`
hooks, records the job as running and calls the subclass's `start_job()`. When a job ends, the
subclass calls `job_finished()`, which computes the new state (SUCCEEDED, RETRYING with a
future `scheduled_at`, or FAILED, with an `ErrorT` appended for a failure), runs the plugins'
`on_job_completed` hooks, queues the update on the worker's outgoing batcher and wakes the
fetcher because a slot came free.

Jobs still running when an executor stops are not finished by it: the worker puts them back
to pending (the attempt is not counted) with `release_unfinished()`.

Prefetch (opt-in, `adaptive_prefetch = True` on a subclass, as the async and threaded
executors do): when jobs are short, `free_slots()` counts room for jobs claimed ahead, so the
slots do not idle while the next claim is in flight. The subclass reports each job's run time
with `record_duration()`; the prefetch is sized from their moving average (see `prefetch()`).

Retries: without a plugin that sets a backoff, a failed job with attempts left is retried
after `DEFAULT_RETRY_DELAY` seconds (a plugin's `on_job_completed` may set another
`scheduled_at`).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import inspect
import traceback as tb
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.abc

from chancy._result import (
    DEFAULT_MAX_RESULT_SIZE,
    check_max_result_size,
    check_size,
    decode_result,
    encode_result,
)
from chancy._sql import malformed_reason
from chancy.allowlist import JobNotAllowed
from chancy.errors import InvalidJobError, RemoteJobError, ResultError
from chancy.events import JOB_FINISHED, JOB_STARTED, Flag, Wakeup
from chancy.job import Limit, QueuedJob, import_function

if TYPE_CHECKING:
    from collections.abc import Callable

    from chancy.queue import Queue
    from chancy.worker import Worker

#: Seconds before a failed job with attempts left runs again, when no plugin decides.
DEFAULT_RETRY_DELAY = 1.0

#: A claim's round trip (seconds) assumed when sizing the prefetch.
CLAIM_TIME = 0.02
#: By default at most this many times `concurrency` jobs are claimed ahead ...
PREFETCH_FACTOR = 4
#: ... and never more than this many.
MAX_PREFETCH = 1000


def evolve(job: QueuedJob, **changes: Any) -> QueuedJob:
    """`dataclasses.replace` without re-running validation (the hot path of every job)."""
    new = object.__new__(type(job))
    new.__dict__.update(job.__dict__, **changes)
    return new


def format_error(error: BaseException) -> str:
    """The formatted traceback stored in `ErrorT["traceback"]`."""
    return "".join(tb.format_exception(error)).rstrip("\n")


def time_limit(job: QueuedJob) -> float | None:
    """The job's TIME limit in seconds (the smallest, if several), or None."""
    values = [limit.value for limit in job.limits if limit.type_ == Limit.Type.TIME]
    return float(min(values)) if values else None


@dataclasses.dataclass(frozen=True)
class Call:
    """How to call a job's function: the function, whether it is a coroutine function, and the
    name of the keyword-only parameter annotated `QueuedJob` that receives the job (if any)."""

    func: Callable[..., Any]
    is_async: bool
    job_param: str | None


def _is_queued_job_annotation(annotation: Any) -> bool:
    if annotation is QueuedJob:
        return True
    return isinstance(annotation, str) and annotation.split(".")[-1].strip("'\"") == "QueuedJob"


@functools.lru_cache(maxsize=4096)
def prepare_call(path: str) -> Call:
    """Import `path` and work out how to call it (cached per path)."""
    func = import_function(path)
    target = inspect.unwrap(func)
    is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(target)
    job_param = None
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        parameters = []  # type: ignore[assignment]
    for param in parameters:
        if param.kind is inspect.Parameter.KEYWORD_ONLY and _is_queued_job_annotation(
            param.annotation
        ):
            job_param = param.name
            break
    return Call(func, is_async, job_param)


def call_kwargs(call: Call, job: QueuedJob) -> dict[str, Any]:
    """The keyword arguments of one run: the job's kwargs plus the job itself if asked for."""
    kwargs = dict(job.kwargs or {})
    if call.job_param is not None:
        kwargs[call.job_param] = job
    return kwargs


class Executor(abc.ABC):
    """Base class of executors; `options` are the queue's `executor_options`.

    Subclasses implement `run`, `start_job` and `cancel`, and call `job_finished` once for
    each job handed to `start_job` (unless the executor is stopped first), with what the job's
    function returned.

    The option every executor takes: `max_result_size` (bytes, default 1 MiB), the largest
    return value, as JSON, that is stored in the job's `result`; a job whose return value is
    larger, or is not JSON (see `chancy._result`), fails that attempt with a `ResultError`.
    """

    #: Opt-in: claim ahead of the free slots when jobs are short (see `free_slots`).
    adaptive_prefetch: ClassVar[bool] = False
    #: With the prefetch: at most this many times `concurrency` jobs claimed ahead ...
    prefetch_factor: ClassVar[int] = PREFETCH_FACTOR
    #: ... and at most this many.
    max_prefetch: ClassVar[int] = MAX_PREFETCH

    def __init__(
        self,
        worker: Worker,
        queue: Queue,
        *,
        max_result_size: int = DEFAULT_MAX_RESULT_SIZE,
        **options: Any,
    ) -> None:
        if options:
            raise TypeError(
                f"{type(self).__name__} got unknown executor_options: {', '.join(sorted(options))}"
            )
        #: The largest result (bytes of JSON) a job may return; a larger one fails the job.
        self.max_result_size = check_max_result_size(max_result_size)
        self.worker = worker
        self.queue = queue
        #: How many jobs run at once in this executor (the queue's per-worker concurrency).
        self.concurrency = queue.concurrency
        #: Jobs handed to this executor that have not finished, by id.
        self.running: dict[str, QueuedJob] = {}
        #: Set whenever a slot comes free (the queue's fetcher waits on it).
        self.wakeup = Wakeup()
        self._idle = Flag()
        self._idle.set()
        #: Moving average of recent job run times (seconds); None until a job ran.
        self.average_duration: float | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} queue={self.queue.name!r} running={len(self.running)}>"

    # -- to implement ----------------------------------------------------------------------

    @abc.abstractmethod
    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Set up resources, call `task_status.started()` when ready, run until cancelled,
        then clean up (shielded). Jobs still running are left to `release_unfinished`."""

    @abc.abstractmethod
    async def start_job(self, job: QueuedJob) -> None:
        """Start running `job` and return at once; call `job_finished` when it ends."""

    @abc.abstractmethod
    async def cancel(self, job_id: str) -> None:
        """Stop a running job; it ends FAILED with `JobCancelled` (no retry)."""

    # -- shared ----------------------------------------------------------------------------

    def free_slots(self) -> int:
        """How many more jobs this executor can take now.

        Without `adaptive_prefetch`: the free slots. With it: the free slots plus `prefetch()`
        jobs claimed ahead (they wait here, already RUNNING in the database, and are put back
        on shutdown); while the prefetched jobs keep the slots busy, nothing is claimed until
        half of that room is free, so claims come in bigger batches.
        """
        running = len(self.running)
        if not self.adaptive_prefetch:
            return max(0, self.concurrency - running)
        capacity = self.concurrency + self.prefetch()
        free = capacity - running
        if running > self.concurrency and free < capacity // 2:
            return 0
        return max(0, free)

    def prefetch(self) -> int:
        """How many jobs to claim ahead: as many as the slots would finish during one claim
        (`CLAIM_TIME`) at the recent average run time, capped by `prefetch_factor` times
        `concurrency` and by `max_prefetch`. Jobs that take longer than a claim get none, so
        slow jobs are never hoarded away from other workers. 0 without `adaptive_prefetch`
        or before a job ran."""
        average = self.average_duration
        if not self.adaptive_prefetch or average is None:
            return 0
        ahead = int(self.concurrency * CLAIM_TIME / max(average, 1e-6))
        return min(ahead, self.concurrency * self.prefetch_factor, self.max_prefetch)

    def record_duration(self, seconds: float) -> None:
        """Feed one job's run time into `average_duration` (a moving average)."""
        average = self.average_duration
        self.average_duration = seconds if average is None else average * 0.9 + seconds * 0.1

    async def submit(self, job: QueuedJob) -> None:
        """Run the `on_job_starting` hooks, record the job as running and start it."""
        self.running[job.id] = job
        self._idle.clear()
        malformed = malformed_reason(job)
        if malformed is not None:  # a row written by hand that does not decode
            self.worker.log.error("job %s: %s", job.id, malformed)
            await self.job_finished(job, error=InvalidJobError(malformed))
            return
        allowed = self.worker.allowed_functions
        if allowed is not None and not allowed.permits(job.func):
            try:
                allowed.check(job.func)
            except JobNotAllowed as exc:
                self.worker.log.error("job %s refused: %s", job.id, exc)
                await self.job_finished(
                    job, error=exc, traceback=f"JobNotAllowed: {exc}", retry=False
                )
            return
        plugins = self.worker.chancy.plugins
        if plugins:
            try:
                for plugin in plugins:
                    job = await plugin.on_job_starting(job, self.worker)
                self.running[job.id] = job
            except Exception as exc:
                self.worker.log.exception("on_job_starting failed for job %s", job.id)
                await self.job_finished(job, error=exc)
                return
        self.worker.hub.emit(JOB_STARTED, job=job)
        await self.start_job(job)

    def new_state(
        self,
        job: QueuedJob,
        *,
        error: BaseException | None = None,
        traceback: str | None = None,
        meta: dict[str, Any] | None = None,
        retry: bool = True,
        result: Any = None,
    ) -> QueuedJob:
        """The job as it is after this attempt (without plugins); `result` is stored as given
        on success (see `job_finished` for its checks)."""
        now = datetime.now(UTC)
        new_meta = job.meta if meta is None else meta
        if error is None and traceback is None:
            return evolve(
                job,
                state=QueuedJob.State.SUCCEEDED,
                completed_at=now,
                meta=new_meta,
                result=result,
            )
        text = traceback if traceback is not None else format_error(error)  # type: ignore[arg-type]
        errors = [*job.errors, {"attempt": job.attempts, "traceback": text, "at": now.isoformat()}]
        if retry and job.attempts < job.max_attempts:
            return evolve(
                job,
                state=QueuedJob.State.RETRYING,
                scheduled_at=now + timedelta(seconds=DEFAULT_RETRY_DELAY),
                errors=errors,
                meta=new_meta,
            )
        return evolve(
            job, state=QueuedJob.State.FAILED, completed_at=now, errors=errors, meta=new_meta
        )

    async def job_finished(
        self,
        job: QueuedJob,
        *,
        error: BaseException | None = None,
        traceback: str | None = None,
        meta: dict[str, Any] | None = None,
        retry: bool = True,
        result: Any = None,
        result_json: bytes | None = None,
    ) -> QueuedJob:
        """Record how a job ended and free its slot; returns the job's new state.

        `error` is the exception the job raised (None on success); `traceback` the text to
        store instead of formatting `error` (for errors that crossed a process boundary; give
        `error=RemoteJobError(type, message)` with it); `meta` the job's meta after the run
        (default: `job.meta`, which in-process jobs mutate); `retry=False` fails the job even
        with attempts left (cancellation). On success, `result` is what the function returned,
        or `result_json` its JSON text (from another process); it must be JSON and at most
        `max_result_size` bytes of it, else the attempt fails with a `ResultError`. The job's
        `result` is then the value as it is read back from its JSON.
        """
        if not self._holds(job):
            # Released, already finished, or a stale run of a job that recovery gave back and
            # this worker claimed again (a later attempt): nothing to write.
            return job
        if error is None and traceback is None and (result is not None or result_json):
            try:
                result = self.stored_result(result, result_json)
            except ResultError as exc:  # a return value, not a raise: the message says it all
                error, traceback, result = exc, f"ResultError: {exc}", None
            except Exception as exc:  # e.g. nested deeper than the encoder goes
                error, result = exc, None
        else:
            result = None
        new = self.new_state(
            job, error=error, traceback=traceback, meta=meta, retry=retry, result=result
        )
        if error is None and traceback is not None:
            error = RemoteJobError("Error", traceback.splitlines()[-1] if traceback else "")
        for plugin in self.worker.chancy.plugins:
            try:
                new = await plugin.on_job_completed(new, self.worker, error=error)
            except Exception:
                self.worker.log.exception(
                    "plugin %s: on_job_completed failed for job %s", plugin.identifier, job.id
                )
        if not self._holds(job):
            return new
        if new.state != QueuedJob.State.SUCCEEDED:
            self._log_failure(new, error)
        del self.running[job.id]
        self.worker.queue_update_nowait(new)
        self.worker.hub.emit(JOB_FINISHED, job=new)
        if not self.running:
            self._idle.set()
        self.wakeup.set()
        return new

    def stored_result(self, result: Any, result_json: bytes | None = None) -> Any:
        """What is stored of a return value (or of its JSON text), or `ResultError`."""
        if result_json is not None:
            check_size(len(result_json), self.max_result_size)
        else:
            result_json = encode_result(result, self.max_result_size)
        if result_json == b"null":
            return None
        try:
            return decode_result(result_json)
        except ValueError as exc:  # msgspec.DecodeError: not JSON after all
            raise ResultError(f"result is not valid JSON: {exc}") from None

    def _log_failure(self, job: QueuedJob, error: BaseException | None) -> None:
        """One WARNING line for an attempt that did not succeed: id, func, queue, attempt,
        error type and message (a limit kill's message carries its figures)."""
        if isinstance(error, RemoteJobError):
            kind, message = error.type_name, error.message
        elif error is not None:
            kind, message = type(error).__name__, str(error)
        else:
            kind, message = "Error", ""
        log = self.worker.log
        if not log:
            return
        log.warning(
            "job %s (%s) on queue %r attempt %d/%d %s: %s: %s",
            job.id,
            job.func,
            job.queue,
            job.attempts,
            job.max_attempts,
            "will retry" if job.state == QueuedJob.State.RETRYING else "failed",
            kind,
            message,
            extra={
                "job_id": job.id,
                "queue": job.queue,
                "func": job.func,
                "attempt": job.attempts,
                "worker_id": self.worker.worker_id,
            },
        )

    def _holds(self, job: QueuedJob) -> bool:
        """Whether `job` is the attempt this executor runs (not a stale run of an earlier one)."""
        held = self.running.get(job.id)
        return held is not None and held.attempts == job.attempts

    async def wait_idle(self) -> None:
        """Return once no job is running in this executor."""
        await self._idle.wait()

    def release_unfinished(self) -> list[QueuedJob]:
        """Put every job still running back to pending (attempt not counted); returns them.

        Called by the worker after the executor stopped; safe to call more than once.
        """
        released = list(self.running.values())
        self.running.clear()
        self._idle.set()
        for job in released:
            self.worker.queue_update_nowait(dataclasses.replace(job, state=QueuedJob.State.PENDING))
        return released


def executor_class(queue: Queue) -> type[Executor]:
    """Import the queue's executor class and check its `executor_options` against the
    constructors that take them (`ValueError` naming the queue and the problem)."""
    try:
        cls = import_function(queue.executor)
    except Exception as exc:
        raise ValueError(
            f"queue {queue.name!r}: cannot load executor {queue.executor!r}: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise ValueError(
            f"queue {queue.name!r}: {queue.executor!r} is not a chancy.executors.Executor subclass"
        )
    if not isinstance(queue.executor_options, dict):
        raise ValueError(f"queue {queue.name!r}: executor_options: expected a dict")
    accepted: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        accepted |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        if klass is Executor:
            break  # the base's own options (max_result_size); it refuses any other
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break  # this constructor passes nothing on
    accepted -= {"self", "worker", "queue"}
    if unknown := sorted(set(queue.executor_options) - accepted):
        raise ValueError(
            f"queue {queue.name!r}: executor {queue.executor!r} does not take the option(s) "
            f"{', '.join(unknown)} (it takes: {', '.join(sorted(accepted)) or 'none'})"
        )
    return cls


def load_executor(worker: Worker, queue: Queue) -> Executor:
    """Import the queue's executor class and build it with the queue's `executor_options`.

    Raises `ValueError` (with a message naming the queue) when it cannot be loaded.
    """
    cls = executor_class(queue)
    try:
        return cls(worker, queue, **queue.executor_options)
    except Exception as exc:
        raise ValueError(
            f"queue {queue.name!r}: executor {queue.executor!r} rejected its options "
            f"{queue.executor_options!r}: {exc}"
        ) from exc
