"""`ProcessExecutor`: runs each job in a child worker process owned by the supervisor.

The default executor of every queue. Up to `concurrency` warm children (forked from a clean
template process, the fork server, or fresh interpreters: see `start_method` below and
`chancy.supervisor.child`) each run one job at a time; the job travels as its packed
JSON in a msgspec frame and its outcome (ok with the function's return value as JSON, or
the error as type, message and formatted traceback, plus the job's meta after the run) comes
back the same way; the child encodes the return value and refuses one that is not JSON or
is over `max_result_size` (the supervisor only decodes JSON, never a pickle). Limits are
enforced from outside the child (`chancy.supervisor.ChildPool`):

* `Limit.Type.MEMORY` (bytes): RSS summed over the child and all its descendants, sampled
  every `monitor_interval` seconds; over the limit, the whole tree is SIGKILLed at once and
  the job fails with "memory limit exceeded: 612 MiB > 100 MiB".
* `Limit.Type.TIME` (seconds): past it the job gets `TimeLimitExceeded` raised inside it, and
  the tree is killed `stop_grace` seconds later if it has not stopped ("time limit exceeded
  after 2.0 s"). The child also arms a hard `RLIMIT_CPU` backstop and is replaced after the
  job.

Either way the attempt fails (and is retried when attempts are left). A child that dies
(`os._exit`, a segfault, SIGKILL from outside) fails its job with "worker process 1234
killed by signal SIGSEGV while running the job". `Chancy.cancel_job` raises `JobCancelled`
in the job, kills after the grace, and fails the job without retry.

Executor options (`Queue.executor_options`): `maximum_jobs_per_worker` (default 100): a
child is replaced after that many jobs; `maximum_rss_per_worker` (bytes, default None: off):
a child whose process tree holds more than that after a job is replaced before its next job
(a leaking job cannot grow a child forever; counted as `reason="rss"` in
`chancy_child_restarts_total`); `initializer`: an importable function
(``"pkg.mod:fn"`` or ``"pkg.mod.fn"``) run once in each new child before its first job (for
``django.setup()`` and the like); `monitor_interval` (default 0.05 s), `stop_grace` (default
1.0 s), `handshake_timeout` (default 60 s, covers the initializer); `pass_env`: names of
environment variables passed to the children as they are in the supervisor, even those the
scrub drops (see `chancy.supervisor._env`): every job on the queue can read them;
`max_result_size` (default 1 MiB), as for every executor; `start_method` (default
``"forkserver"``, or ``CHANCY_START_METHOD`` if set): ``"forkserver"`` forks each new child
from a template process started once per queue (a clean interpreter that has imported only
the child bootloader, never the supervisor: replacing a child costs a fork, not an
interpreter start; job modules and the initializer are still imported in each child), or
``"spawn"``: a fresh interpreter per child. Forked children keep every guarantee of fresh
ones (limits, scrubbed environment, own session and cgroup, parent death); they share the
template's environment as it was when the queue started, and its hash seed.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import anyio
import anyio.abc

from chancy.errors import JobCancelled, RemoteJobError, TimeLimitExceeded
from chancy.executors.base import Executor, time_limit
from chancy.job import Limit, QueuedJob
from chancy.supervisor import ChildPool, Outcome


def memory_limit(job: QueuedJob) -> int | None:
    """The job's MEMORY limit in bytes (the smallest, if several), or None."""
    values = [limit.value for limit in job.limits if limit.type_ == Limit.Type.MEMORY]
    return int(min(values)) if values else None


class ProcessExecutor(Executor):
    """Runs jobs in supervised child processes; see the module docs for limits and options.

    Uses the base class's adaptive prefetch: when jobs take less than a claim's round trip
    (a no-op's round trip on a warm child is under a millisecond), jobs are claimed ahead of
    the free slots, so the children do not idle while the next claim is in flight.
    """

    adaptive_prefetch = True
    #: Up to 8 x concurrency claimed ahead (only for jobs shorter than a claim / 8): with few
    #: children, 4 x left them idle between claims (drain of 3,000 no-ops, 2 children: 1,870
    #: jobs/s at 4 x, 2,345 at 8 x, 630 without prefetch).
    prefetch_factor = 8

    def __init__(
        self,
        worker: Any,
        queue: Any,
        *,
        maximum_jobs_per_worker: int = 100,
        maximum_rss_per_worker: int | None = None,
        initializer: str | None = None,
        monitor_interval: float = 0.05,
        stop_grace: float = 1.0,
        handshake_timeout: float = 60.0,
        pass_env: list[str] | None = None,
        start_method: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(worker, queue, **options)
        if pass_env is not None and (
            isinstance(pass_env, str) or not all(isinstance(n, str) and n for n in pass_env)
        ):
            raise TypeError("pass_env: expected a list of environment variable names")
        # Named variables pass through to the children even when the scrub would drop them:
        # the queue's `pass_env` and the host's `CHANCY_PASS_ENV` (`chancy-supervisor --pass-env`).
        host = [n.strip() for n in os.environ.get("CHANCY_PASS_ENV", "").split(",") if n.strip()]
        names = [*(pass_env or ()), *host]
        extra_env = {n: os.environ[n] for n in names if n in os.environ}
        if initializer is not None and not isinstance(initializer, str):
            raise TypeError("initializer: expected an importable name such as 'pkg.mod:fn'")
        self.pool = ChildPool(
            self.concurrency,
            maximum_jobs_per_worker=maximum_jobs_per_worker,
            maximum_rss_per_worker=maximum_rss_per_worker,
            initializer=initializer,
            monitor_interval=monitor_interval,
            stop_grace=stop_grace,
            handshake_timeout=handshake_timeout,
            extra_env=extra_env or None,
            start_method=start_method,
            logger=worker.log.getChild("supervisor") if worker.log else None,
        )
        self._send, self._receive = anyio.create_memory_object_stream[QueuedJob](math.inf)
        self._cancelled: set[str] = set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        # Cancelling this kills the busy children (their jobs stay in `running` for the
        # worker's `release_unfinished`), then the pool stops the idle ones (shielded).
        try:
            async with self.pool, anyio.create_task_group() as tg:
                for _ in range(self.concurrency):
                    tg.start_soon(self._slot)
                task_status.started()
        finally:
            self._send.close()
            self._receive.close()

    async def start_job(self, job: QueuedJob) -> None:
        self._send.send_nowait(job)

    async def cancel(self, job_id: str) -> None:
        if job_id not in self.running:
            return
        self._cancelled.add(job_id)
        await self.pool.cancel(job_id, "job cancelled while running")

    async def _slot(self) -> None:
        async for job in self._receive:
            await self._run_one(job)

    async def _run_one(self, job: QueuedJob) -> None:
        if job.id in self._cancelled:
            self._cancelled.discard(job.id)
            await self.job_finished(job, error=JobCancelled("job cancelled"), retry=False)
            return
        packed = json.dumps(job.pack()).encode()
        outcome = await self.pool.run_job(
            packed,
            job_id=job.id,
            memory_limit=memory_limit(job),
            time_limit=time_limit(job),
            max_result_size=self.max_result_size,
        )
        self.record_duration(outcome.duration)  # time on a child, not waiting for one
        cancelled = job.id in self._cancelled
        self._cancelled.discard(job.id)
        if outcome.ok and not cancelled:
            await self.job_finished(job, meta=outcome.meta, result_json=outcome.result)
            return
        await self.job_finished(
            job,
            error=_exception(outcome, cancelled),
            traceback=outcome.error_text or "job cancelled while running",
            meta=outcome.meta,
            retry=not cancelled,
        )


def _exception(outcome: Outcome, cancelled: bool) -> BaseException:
    """The exception handed to plugins for an outcome that crossed the process boundary."""
    error = outcome.error
    if cancelled:
        return JobCancelled(error.message if error else "job cancelled while running")
    if error is None:
        return RemoteJobError("Error", "unknown failure")
    if error.type == TimeLimitExceeded.__name__:
        return TimeLimitExceeded(error.message)
    return RemoteJobError(error.type, error.message)
