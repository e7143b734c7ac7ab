"""`ThreadedExecutor`: runs a queue's plain (synchronous) jobs on worker threads.

Up to `concurrency` jobs run at once, each on its own thread from anyio's thread pool, bounded
by a capacity limiter of the executor's own (not anyio's shared default of 40). Coroutine
functions are accepted too and run on the worker's event loop.

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

import functools
from typing import Any

import anyio
import anyio.to_thread

from chancy.executors.asyncex import AsyncExecutor


class ThreadedExecutor(AsyncExecutor):
    """Runs sync jobs on threads (coroutine jobs on the loop); see the module docs for limits."""

    def __init__(self, worker: Any, queue: Any, **options: Any) -> None:
        super().__init__(worker, queue, **options)
        self._limiter = anyio.CapacityLimiter(self.concurrency)

    async def _call_sync(self, func: Any, kwargs: dict[str, Any]) -> Any:
        return await anyio.to_thread.run_sync(
            functools.partial(func, **kwargs), limiter=self._limiter, abandon_on_cancel=True
        )
