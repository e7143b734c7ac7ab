"""Testing your jobs: a real drain, an in-process inline mode, and pytest fixtures.

* :func:`drain` runs a worker on your app until no runnable job is left (in the given queues),
  and raises :class:`JobFailed` with the job's traceback as soon as one fails for good, so a
  failing job fails the test instead of hanging it.
* :class:`Inline` stands in for a `Chancy` app in unit tests: `push` runs the job at once, in
  the test's own process, with no database (and records it for :func:`assert_pushed`).
* :func:`assert_pushed` checks that a job of a function (with given keyword arguments) was
  pushed, to an `Inline` app or to a real one.
* With ``pytest_plugins = ["chancy.testing"]`` in your ``conftest.py``, the fixtures
  ``chancy_dsn`` (``CHANCY_TEST_DSN``, else an embedded server of the session's own) and
  ``chancy_app`` (a migrated app on a throwaway table prefix, dropped after the test) are yours.

See docs/testing.md.
"""

from __future__ import annotations

import dataclasses
import inspect
import secrets
import uuid
from typing import TYPE_CHECKING, Any

import anyio

from chancy.errors import ChancyError
from chancy.events import JOB_FINISHED
from chancy.job import Job, QueuedJob, Reference, import_function

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from chancy.app import Chancy
    from chancy.events import HubEvent

__all__ = ["Inline", "JobFailed", "assert_pushed", "drain"]


class JobFailed(ChancyError):
    """A job failed for good while :func:`drain` ran; the message holds its traceback."""

    def __init__(self, job: QueuedJob) -> None:
        self.job = job
        text = job.errors[-1]["traceback"] if job.errors else "(no error recorded)"
        super().__init__(f"job {job.id} ({job.func}) on queue {job.queue!r} failed:\n{text}")


def _job_of(item: Job | Any) -> Job:
    found = item if isinstance(item, Job) else getattr(item, "job", None)
    if not isinstance(found, Job):
        raise TypeError(f"expected a Job or an @job function, got {item!r}")
    return found


async def drain(
    chancy: Chancy,
    *,
    queues: list[str] | None = None,
    timeout: float = 60,
    raise_errors: bool = True,
    **worker_options: Any,
) -> list[QueuedJob]:
    """Run a worker until no job of `queues` (default: every queue) is runnable or running.

    Returns the jobs that finished meanwhile. With `raise_errors`, the first job that fails
    for good (no attempts left) stops the drain with :class:`JobFailed`. Jobs scheduled for
    later than now are not waited for. `TimeoutError` after `timeout` seconds.
    """
    from chancy.worker import Worker

    options = {
        "register_signal_handlers": False,
        "heartbeat_poll_interval": 1,
        "heartbeat_timeout": 5,
        "queue_change_poll_interval": 1,
        **worker_options,
    }
    finished: list[QueuedJob] = []
    failed: list[QueuedJob] = []
    worker = Worker(chancy, **options)

    def on_finished(event: HubEvent) -> None:
        job: QueuedJob = event.body["job"]
        if queues is None or job.queue in queues:
            if job.state in (QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED):
                finished.append(job)
            if job.state == QueuedJob.State.FAILED:
                failed.append(job)

    off = worker.hub.on(JOB_FINISHED, on_finished)
    where = "" if queues is None else " AND queue = ANY(%s)"
    query = chancy.tables.q(
        "SELECT count(*) FROM {jobs} WHERE (state = 'running' OR (state IN ('pending',"
        " 'retrying') AND scheduled_at <= now()))" + where
    )
    params = None if queues is None else (list(queues),)
    try:
        with anyio.fail_after(timeout):
            async with worker:
                while True:
                    if failed and raise_errors:
                        raise JobFailed(failed[0])
                    async with chancy.db.connection() as conn:
                        row = await conn.fetchone(query, params)
                    if row is not None and row[0] == 0 and not worker.running_jobs():
                        break
                    await anyio.sleep(0.05)
    finally:
        off()
    if failed and raise_errors:
        raise JobFailed(failed[0])
    return finished


@dataclasses.dataclass
class Pushed:
    """One job pushed to an :class:`Inline` app, and how its inline run ended."""

    job: Job
    reference: Reference
    result: Any = None
    error: BaseException | None = None


class Inline:
    """A stand-in for a `Chancy` app that runs each pushed job at once, in-process.

    No database, no worker: `push`/`sync_push` import the job's function and call it with its
    kwargs (awaiting it if it is a coroutine; a `QueuedJob` parameter gets a `QueuedJob`), then
    record it in :attr:`pushed`. With `raise_errors` (default) an exception in the job
    propagates out of `push`, so the test sees it; otherwise it is recorded.

    Pass it where your code takes the app (``send_welcome(app)``); it has no queues, limits,
    retries or result storage, which :func:`drain` on a real app covers.
    """

    def __init__(self, *, raise_errors: bool = True) -> None:
        self.raise_errors = raise_errors
        self.pushed: list[Pushed] = []

    def _prepare(self, item: Job | Any) -> tuple[Job, Any, dict[str, Any], Reference]:
        job = _job_of(item)
        func = import_function(job.func)
        kwargs = dict(job.kwargs or {})
        reference = Reference(uuid.uuid4())
        wanted = [
            name
            for name, param in inspect.signature(func).parameters.items()
            if param.annotation in (QueuedJob, "QueuedJob")
        ]
        if wanted:
            kwargs[wanted[0]] = QueuedJob(
                **{f.name: getattr(job, f.name) for f in dataclasses.fields(Job)},
                id=reference.identifier,
                state=QueuedJob.State.RUNNING,
                attempts=1,
            )
        return job, func, kwargs, reference

    def _record(self, job: Job, reference: Reference, result: Any, error: Any) -> None:
        self.pushed.append(Pushed(job, reference, result, error))
        if error is not None and self.raise_errors:
            raise error

    async def push(self, item: Job | Any) -> Reference:
        job, func, kwargs, reference = self._prepare(item)
        result: Any = None
        error: BaseException | None = None
        try:
            result = func(**kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            error = exc
        self._record(job, reference, result, error)
        return reference

    def sync_push(self, item: Job | Any) -> Reference:
        job, func, kwargs, reference = self._prepare(item)
        result: Any = None
        error: BaseException | None = None
        try:
            result = func(**kwargs)
            if inspect.isawaitable(result):
                raise TypeError(f"{job.func} is a coroutine function: use `await push(...)`")
        except Exception as exc:
            error = exc
        self._record(job, reference, result, error)
        return reference

    async def push_many(self, items: list[Job | Any]) -> AsyncIterator[list[Reference]]:
        yield [await self.push(item) for item in items]


def _func_path(func: Any) -> str:
    if isinstance(func, str):
        return func
    job = getattr(func, "job", None)
    if isinstance(job, Job):
        return job.func
    return Job.from_func(func).func


async def assert_pushed(app: Chancy | Inline, func: Any, **kwargs: Any) -> QueuedJob | Pushed:
    """The (newest) job of `func` (a function, an `@job` function or a dotted path) whose
    kwargs include `kwargs`, pushed to `app`; `AssertionError` listing what was pushed if none.
    """
    path = _func_path(func)

    def matches(job_kwargs: dict[str, Any]) -> bool:
        return all(key in job_kwargs and job_kwargs[key] == value for key, value in kwargs.items())

    if isinstance(app, Inline):
        for pushed in reversed(app.pushed):
            if pushed.job.func == path and matches(pushed.job.kwargs or {}):
                return pushed
        seen = [(p.job.func, p.job.kwargs) for p in app.pushed]
    else:
        jobs = await app.list_jobs(func=path, limit=1000)
        for job in jobs:
            if matches(job.kwargs or {}):
                return job
        seen = [(j.func, j.kwargs) for j in await app.list_jobs(limit=20)]
    raise AssertionError(f"no job of {path} with {kwargs} was pushed; pushed: {seen}")


# -- the pytest plugin (``pytest_plugins = ["chancy.testing"]``) ---------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - only the fixtures need pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def chancy_dsn() -> Iterator[str]:
        """`CHANCY_TEST_DSN`, else an embedded PostgreSQL of the session's own."""
        import os
        import tempfile

        dsn = os.environ.get("CHANCY_TEST_DSN")
        if dsn:
            yield dsn
            return
        from chancy.embedded import embedded_dsn, stop_embedded

        with tempfile.TemporaryDirectory(prefix="chancy-test-pg-") as folder:
            uri = embedded_dsn(folder, keep_running=False)
            try:
                yield uri
            finally:
                stop_embedded(folder)

    @pytest.fixture
    async def chancy_app(chancy_dsn: str) -> AsyncIterator[Chancy]:
        """A migrated app with no plugins on a table prefix of the test's own (its tables are
        dropped after the test). Needs an async test runner (anyio's pytest plugin)."""
        from chancy.app import Chancy

        app = Chancy(chancy_dsn, prefix=f"t{secrets.token_hex(4)}_", plugins=[])
        async with app:
            await app.migrate()
            try:
                yield app
            finally:
                await app.migrate(to_version=0)
