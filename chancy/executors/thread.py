"""`ThreadedExecutor`: runs a queue's plain (synchronous) jobs on worker threads.

Up to `concurrency` jobs run at once, each on a thread from anyio's thread pool, bounded by a
capacity limiter of the executor's own (not anyio's shared default of 40). Coroutine functions
are accepted too and run on the worker's event loop. When jobs are very short (their recent
average is under `BATCH_BELOW` seconds) and have no TIME limit, a thread runs up to
`BATCH_SIZE` of them back to back per hand-off, which saves the cost of a thread round trip
per job.

What threads cannot do: a thread cannot be stopped from outside. When a job is cancelled
(`Chancy.cancel_job`) or runs past its `Limit.Type.TIME` limit, the job is marked FAILED (a time
limit is retried when attempts are left) and its slot is freed at once, but the thread itself
runs on until the function returns and its result is discarded. `Limit.Type.MEMORY` is not
enforced (threads share the worker's memory). Likewise, when a worker stops with jobs still
on threads past `shutdown_timeout`, those jobs are put back to pending while their threads run
on, so such a job may run again elsewhere before its first run ends. For hard limits and clean
cut-offs use the process executor.
"""

from __future__ import annotations

import inspect
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from chancy.errors import JobCancelled
from chancy.executors.asyncex import AsyncExecutor
from chancy.executors.base import Call, call_kwargs, prepare_call, time_limit

if TYPE_CHECKING:
    from chancy.job import QueuedJob

#: Jobs whose recent average run time is below this many seconds may share a thread hand-off.
BATCH_BELOW = 0.001
#: At most this many jobs per hand-off.
BATCH_SIZE = 8


class ThreadedExecutor(AsyncExecutor):
    """Runs sync jobs on threads (coroutine jobs on the loop); see the module docs for limits."""

    def _batchable(self, job: QueuedJob) -> Call | None:
        if job.id in self._cancelled or time_limit(job) is not None:
            return None
        try:
            call = prepare_call(job.func)
        except Exception:
            return None
        return None if call.is_async else call

    async def _slot(self) -> None:
        receive = self._receive
        async for job in receive:
            average = self.average_duration
            call = self._batchable(job) if average is not None and average < BATCH_BELOW else None
            if call is None:
                await self._run_one(job)
                continue
            batch = [(job, call)]
            leftover = None
            while len(batch) < BATCH_SIZE:
                try:
                    more = receive.receive_nowait()
                except anyio.WouldBlock:
                    break
                more_call = self._batchable(more)
                if more_call is None:
                    leftover = more
                    break
                batch.append((more, more_call))
            await self._run_batch(batch)
            if leftover is not None:
                await self._run_one(leftover)

    async def _run_batch(self, batch: list[tuple[QueuedJob, Call]]) -> None:
        cancelled = self._cancelled

        def work() -> list[tuple[BaseException | None, float, Any]]:
            results: list[tuple[BaseException | None, float, Any]] = []
            for job, call in batch:
                if job.id in cancelled:
                    results.append((None, 0.0, None))
                    continue
                started = time.perf_counter()
                error: BaseException | None = None
                value = None
                try:
                    value = call.func(**call_kwargs(call, job))
                except (Exception, SystemExit) as exc:
                    error = exc
                results.append((error, time.perf_counter() - started, value))
            return results

        results = await anyio.to_thread.run_sync(
            work, limiter=self._limiter, abandon_on_cancel=True
        )
        for (job, _call), (error, duration, value) in zip(batch, results, strict=True):
            self.record_duration(duration)
            retry = True
            if error is None and inspect.isawaitable(value):
                try:
                    value = await value
                except (Exception, SystemExit) as exc:
                    error = exc
            if job.id in cancelled:
                cancelled.discard(job.id)
                error, retry = JobCancelled("job cancelled"), False
            await self.job_finished(job, error=error, retry=retry, result=value)
