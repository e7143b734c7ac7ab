"""`AsyncExecutor`: runs a queue's jobs in the worker's own event loop.

Coroutine functions run as tasks of the executor (a fixed set of `concurrency` slot tasks, so
no task is created per job); plain functions are accepted too and run on a worker thread so
they cannot block the loop (at most `concurrency` threads, under a limiter of the executor's
own). `Chancy.cancel_job` and `Limit.Type.TIME` stop a coroutine job at
once by cancelling it (a plain function on a thread cannot be interrupted: its slot is freed
and its result discarded, but the thread runs on to the end). `Limit.Type.MEMORY` is not
enforced in-process: use the process executor for hard limits. What a job returns is stored
in its `result` (JSON, at most the `max_result_size` executor option; see `Executor`).
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import sniffio

from chancy.errors import JobCancelled, TimeLimitExceeded, WrongEventLoop
from chancy.executors.base import Executor, call_kwargs, prepare_call, time_limit
from chancy.job import QueuedJob


def _explain_loop_mismatch(job: QueuedJob, exc: BaseException) -> BaseException:
    """On a trio worker, turn asyncio's "no running event loop" into an error that says why.

    A coroutine job runs on the worker's own event loop. Jobs written with anyio (or plain
    ``await`` of other such code) run on both; jobs that use asyncio directly need an
    asyncio worker (``chancy-supervisor --backend asyncio``, the default).
    """
    foreign = (isinstance(exc, RuntimeError) and str(exc) == "no running event loop") or (
        isinstance(exc, TypeError) and "unrecognized yield message" in str(exc)
    )
    if not foreign or sniffio.current_async_library() != "trio":
        return exc
    error = WrongEventLoop(
        f"{job.func} uses asyncio, but this worker runs on trio: serve its queue from an "
        "asyncio worker (chancy-supervisor --backend asyncio, the default), or write the job "
        f"with anyio so that it runs on both ({type(exc).__name__}: {exc})"
    )
    error.__cause__ = exc
    error.__traceback__ = exc.__traceback__
    return error


class AsyncExecutor(Executor):
    """Runs coroutine jobs on the worker's event loop (plain functions on threads).

    Uses the base class's adaptive prefetch: short jobs are claimed ahead of the free slots.
    """

    adaptive_prefetch = True

    def __init__(self, worker: Any, queue: Any, **options: Any) -> None:
        super().__init__(worker, queue, **options)
        self._send, self._receive = anyio.create_memory_object_stream[QueuedJob](math.inf)
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._cancelled: set[str] = set()
        self._limiter = anyio.CapacityLimiter(self.concurrency)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        # Jobs still queued or running when this is cancelled stay in `running`; the worker
        # puts them back with `release_unfinished`.
        async with anyio.create_task_group() as tg:
            for _ in range(self.concurrency):
                tg.start_soon(self._slot)
            task_status.started()

    async def start_job(self, job: QueuedJob) -> None:
        self._send.send_nowait(job)

    async def cancel(self, job_id: str) -> None:
        if job_id not in self.running:
            return
        self._cancelled.add(job_id)
        scope = self._scopes.get(job_id)
        if scope is not None:
            scope.cancel()

    async def _slot(self) -> None:
        async for job in self._receive:
            await self._run_one(job)

    async def _call_sync(
        self, func: Any, kwargs: dict[str, Any], spent: list[float] | None = None
    ) -> Any:
        """Run a plain function on a worker thread; `spent` gets the seconds the function
        itself took (without the hand-off to the thread and back, which for a short job is
        most of the wall time: the threaded executor's batching decides on the function's)."""

        def timed() -> Any:
            began = time.perf_counter()
            try:
                return func(**kwargs)
            finally:
                if spent is not None:
                    spent.append(time.perf_counter() - began)

        # A limiter of its own: anyio's default one (40 threads) is what the database layer
        # uses under trio, and blocking jobs must never starve it.
        return await anyio.to_thread.run_sync(timed, limiter=self._limiter, abandon_on_cancel=True)

    async def _run_one(self, job: QueuedJob) -> None:
        if job.id in self._cancelled:  # cancelled while it waited for a slot
            self._cancelled.discard(job.id)
            await self.job_finished(job, error=JobCancelled("job cancelled"), retry=False)
            return
        error: BaseException | None = None
        result: Any = None
        retry = True
        limit = time_limit(job)
        scope = anyio.CancelScope()
        self._scopes[job.id] = scope
        started = time.perf_counter()
        spent: list[float] = []  # a plain function's own run time, measured in its thread
        try:
            call = prepare_call(job.func)
            kwargs = call_kwargs(call, job)
            with scope:
                if limit is not None:
                    scope.deadline = anyio.current_time() + limit
                if call.is_async:
                    result = await call.func(**kwargs)
                else:
                    result = await self._call_sync(call.func, kwargs, spent)
                    if inspect.isawaitable(result):
                        result = await result
        except (Exception, SystemExit) as exc:
            error = _explain_loop_mismatch(job, exc)
        finally:
            self._scopes.pop(job.id, None)
            self.record_duration(spent[0] if spent else time.perf_counter() - started)
        if job.id in self._cancelled:
            self._cancelled.discard(job.id)
            error, retry = JobCancelled("job cancelled while running"), False
        elif scope.cancelled_caught:
            error = TimeLimitExceeded(f"time limit exceeded: {limit:g} s")
        await self.job_finished(job, error=error, retry=retry, result=result)
