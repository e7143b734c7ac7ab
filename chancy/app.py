"""The Chancy application: configuration, pools, migrations, queues, pushing and following jobs.

This module is the client side: a web app that only pushes jobs imports it and nothing of the
worker, the supervisor or the executors.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import logging
import math
import operator
import os
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from psycopg import AsyncCursor, Cursor, sql

from chancy import _sql
from chancy._blocking import BlockingConn, BlockingCursorConn, blocking_sleep, run_blocking
from chancy._db import Conn, CursorConn, Database, dumps
from chancy._sql import QUEUE_SELECT, Tables, event, read_job, text_job_columns
from chancy.admin import JobFilter, JobsResult, QueueStats
from chancy.errors import InvalidJobError, UnknownQueueError
from chancy.job import Job, QueuedJob, Reference, uuid7_strings
from chancy.migrations import CORE, CORE_MIGRATIONS, current_version, migrate_component
from chancy.plugin import Plugin, check_plugins
from chancy.queue import Queue

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Awaitable,
        Callable,
        Collection,
        Coroutine,
        Generator,
        Iterable,
        Iterator,
        Sequence,
    )

    from psycopg_pool import AsyncConnectionPool, ConnectionPool

_INT32 = 2**31 - 1
_NONE = type(None)
_PRIORITY, _MAX_ATTEMPTS, _UNIQUE_KEY, _QUEUE = map(
    operator.attrgetter, ("priority", "max_attempts", "unique_key", "queue")
)
_KWARGS, _META, _SCHEDULED_AT = map(operator.attrgetter, ("kwargs", "meta", "scheduled_at"))


def _only(values: Iterable[Any], *types: type) -> bool:
    """Whether every value's type is exactly one of `types` (a C loop: `set(map(type, ...))`)."""
    return set(map(type, values)) <= set(types)


def _plain_jobs(jobs: Sequence[Job]) -> bool:
    """The checks of `_PushPlan._check`, a field at a time over the batch; False sends the batch
    through the one-by-one path, which names the first bad job (or accepts subclasses)."""
    if not jobs:
        return True
    for get, low in ((_PRIORITY, -_INT32), (_MAX_ATTEMPTS, 1)):
        values = list(map(get, jobs))
        if not _only(values, int) or min(values) < low or max(values) > _INT32:
            return False
    return (
        _only(map(_UNIQUE_KEY, jobs), str, _NONE)
        and _only(map(_KWARGS, jobs), dict, _NONE)
        and _only(map(_META, jobs), dict)
        and _only(map(_SCHEDULED_AT, jobs), datetime)
    )


T = TypeVar("T")
_WORKER_COLUMNS = (
    "worker_id",
    "incarnation",
    "hostname",
    "pid",
    "tags",
    "queues",
    "queue_status",
    "started_at",
    "last_seen",
    "expires_at",
)


def _ref_id(ref: Reference | str) -> str:
    return str(ref if isinstance(ref, Reference) else Reference(ref))


_FINISHED = frozenset({QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED})


def _wanted_states(
    states: Collection[QueuedJob.State | str] | None,
) -> frozenset[QueuedJob.State]:
    if states is None:
        return _FINISHED
    if isinstance(states, str | QueuedJob.State):
        states = [states]
    wanted = frozenset(QueuedJob.State(state) for state in states)
    if not wanted:
        raise ValueError("states: expected at least one state")
    return wanted


def _mentions(payload: str, ids: set[str]) -> bool:
    """Whether a notice names one of `ids` (a "job.done" or "job.cancelled" notice)."""
    try:
        message = json.loads(payload)
        named = message.get("ids") or [message.get("id")]
    except (ValueError, AttributeError):
        return True
    return any(str(i) in ids for i in named)


def _check_executor(queue: Queue) -> None:
    # Imported here: a web app that only pushes never loads the executors.
    from chancy.executors.base import executor_class

    executor_class(queue)


def _all_applied(versions: dict[str, tuple[int, int]]) -> bool:
    return all(applied == latest for applied, latest in versions.values())


def setup_default_logger(level: int = logging.INFO) -> logging.Logger:
    """Configure the `chancy` logger with a console handler at `level`."""
    logger = logging.getLogger("chancy")
    logger.setLevel(level)
    if not any(getattr(h, "_chancy_default", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler._chancy_default = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    return logger


def _default_plugins() -> list[Plugin]:
    from chancy.plugins import default_plugins

    return default_plugins()


def _queue_row(queue: Queue) -> tuple[Any, ...]:
    return (
        queue.name,
        queue.concurrency,
        sorted(queue.tags),
        queue.state.value,
        queue.executor,
        dumps(queue.executor_options),
        float(queue.polling_interval),
        queue.rate_limit,
        queue.rate_limit_window,
        queue.resume_at,
    )


def _queue_from_row(row: tuple[Any, ...]) -> Queue:
    name, concurrency, tags, state, executor, options, polling, rate_limit, window, resume = row
    return Queue(
        name=name,
        concurrency=concurrency,
        tags=set(tags),
        state=Queue.State(state),
        executor=executor,
        executor_options=options or {},
        polling_interval=int(polling) if float(polling).is_integer() else polling,
        rate_limit=rate_limit,
        rate_limit_window=window,
        resume_at=resume,
    )


_QUEUE_COLUMNS = (
    "name, concurrency, tags, state, executor, executor_options, polling_interval,"
    " rate_limit, rate_limit_window, resume_at"
)


#: Where each field sits in a pushed row (the order of `_compose_insert_query`'s columns).
_FUNC_COLUMN, _KWARGS_COLUMN, _META_COLUMN = 2, 3, 9
_EPOCH, _MICROSECOND = _sql.EPOCH, _sql.MICROSECOND  # scheduled_at travels as microseconds


class _PushPlan:
    """One batch of jobs, checked and encoded as a single JSON document for one INSERT.

    Sending the batch as one JSON text (decoded in the server) is several times faster than
    adapting ten parameter arrays value by value on the client; each job is a JSON array, not
    an object, which spares encoding (and parsing) ten keys a job: a third of the encoding.
    """

    def __init__(
        self,
        jobs: Sequence[Job | Any],
        offset: int = 0,
        hooks: Sequence[Callable[[Job], Job]] = (),
    ) -> None:
        self.ids: list[str] = uuid7_strings(len(jobs))
        if hooks or not _only(jobs, Job) or not _plain_jobs(jobs):
            jobs = self._checked(jobs, offset, hooks)
        # else the common batch: plain Jobs, checked a column at a time by C loops.
        rows = [
            [
                id_,
                job.queue,
                job.func,
                job.kwargs or {},
                job.priority,
                job.max_attempts,
                (job.scheduled_at - _EPOCH) // _MICROSECOND,
                [limit.serialize() for limit in job.limits] if job.limits else [],
                job.unique_key,
                job.meta,
            ]
            for id_, job in zip(self.ids, jobs, strict=True)
        ]
        #: The jobs as pushed (after the plugins' `on_push`).
        self.jobs: list[Job] = list(jobs)
        self.unique_keys: list[str | None] = list(map(_UNIQUE_KEY, jobs))
        self.queue_of: list[str] = list(map(_QUEUE, jobs))
        try:
            self.document = dumps(rows)
        except (TypeError, ValueError):
            self.document = ""
            for index, row in enumerate(rows, start=offset):
                self._check_json(index, row)
        self.queues = sorted(set(self.queue_of))

    def _checked(
        self, items: Sequence[Job | Any], offset: int, hooks: Sequence[Callable[[Job], Job]]
    ) -> list[Job]:
        """Resolve, hook and check the jobs one by one (the error names the first bad one)."""
        jobs: list[Job] = []
        for index, item in enumerate(items, start=offset):
            job = item if isinstance(item, Job) else getattr(item, "job", None)
            if not isinstance(job, Job):
                raise InvalidJobError(
                    f"job {index}: expected a Job or an @job function, got {item!r}"
                )
            for hook in hooks:  # plugins' on_push (e.g. trace context into meta)
                job = hook(job)
            self._check(index, job)
            jobs.append(job)
        return jobs

    @staticmethod
    def _check_json(index: int, row: list[Any]) -> None:
        for field, column in (("kwargs", _KWARGS_COLUMN), ("meta", _META_COLUMN)):
            try:
                dumps(row[column])
            except (TypeError, ValueError) as exc:
                raise InvalidJobError(
                    f"job {index} ({row[_FUNC_COLUMN]}): {field}: not JSON-serialisable: {exc}"
                ) from None

    @staticmethod
    def _check(index: int, job: Job) -> None:
        def bad(field: str, why: str) -> InvalidJobError:
            return InvalidJobError(f"job {index} ({job.func}): {field}: {why}")

        for field in ("priority", "max_attempts"):
            value = getattr(job, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(field, f"expected an integer, got {type(value).__name__}")
            if not -_INT32 <= value <= _INT32:
                raise bad(field, f"{value} is out of range")
        if job.max_attempts < 1:
            raise bad("max_attempts", "must be at least 1")
        if job.unique_key is not None and not isinstance(job.unique_key, str):
            raise bad("unique_key", "expected a string or None")
        if job.kwargs is not None and not isinstance(job.kwargs, dict):
            raise bad("kwargs", "expected a dict of keyword arguments")
        if not isinstance(job.meta, dict):
            raise bad("meta", "expected a dict")
        if not isinstance(job.scheduled_at, datetime):
            raise bad("scheduled_at", "expected a datetime")

    def params(self, tables: Tables, notify: bool, strict: bool) -> tuple[str, list[Any]]:
        params: list[Any] = [self.document]
        if notify:
            params += [tables.channel, _pushed_event(tuple(self.queues))]
        return _insert_query(tables, notify, strict), params

    def references(self, inserted: set[str], existing: dict[str, str]) -> list[Reference]:
        refs = []
        for id_, key in zip(self.ids, self.unique_keys, strict=True):
            refs.append(_reference(id_ if id_ in inserted else existing[key]))  # type: ignore[index]
        return refs

    def conflicting_keys(self, inserted: set[str]) -> list[str]:
        return sorted(
            {k for i, k in zip(self.ids, self.unique_keys, strict=True) if i not in inserted and k}
        )

    def skipped_holding(self, keys: Collection[str], inserted: set[str]) -> list[Job]:
        """The jobs skipped for one of `keys` (their holder has finished since)."""
        return [
            job
            for job, id_, key in zip(self.jobs, self.ids, self.unique_keys, strict=True)
            if id_ not in inserted and key in keys
        ]


if TYPE_CHECKING:
    #: One statement of a push (query text, parameters), what it returns, and the push.
    _Step = tuple[str, Any]
    _Rows = list[tuple[Any, ...]]
    _PushFlow = Generator[_Step, _Rows, list[Reference]]


async def _run_flow(
    flow: _PushFlow, run: Callable[[str, Any], Awaitable[_Rows]]
) -> list[Reference]:
    """Drive a push with an async connection or cursor (`run` executes and fetches)."""
    try:
        step = next(flow)
        while True:
            step = flow.send(await run(*step))
    except StopIteration as stop:
        refs: list[Reference] = stop.value
        return refs


def _sync_run_flow(flow: _PushFlow, cursor: Cursor) -> list[Reference]:
    """Drive a push with a sync cursor."""
    try:
        step = next(flow)
        while True:
            step = flow.send(cursor.execute(*step).fetchall())
    except StopIteration as stop:
        refs: list[Reference] = stop.value
        return refs


def _reference(identifier: str) -> Reference:
    """A `Reference` to an id already in canonical form (made by `uuid7()` or read back as
    `id::text`), without parsing it again."""
    ref = object.__new__(Reference)
    ref.identifier = identifier
    return ref


@functools.lru_cache(maxsize=256)
def _pushed_event(queues: tuple[str, ...]) -> str:
    return event("pushed", q=list(queues))


#: The push statements as text, by (kind, table prefix, notify, strict): composing them with
#: `psycopg.sql` on every push cost more than a tenth of a one-job `push`.
_QUERY_TEXT: dict[tuple[str, str, bool, bool], str] = {}


def _insert_query(tables: Tables, notify: bool, strict: bool) -> str:
    key = ("insert", tables.prefix, notify, strict)
    text = _QUERY_TEXT.get(key)
    if text is None:
        text = _QUERY_TEXT[key] = _compose_insert_query(tables, notify, strict).as_string(None)
    return text


def _compose_insert_query(tables: Tables, notify: bool, strict: bool) -> sql.Composed:
    # One statement per batch: the rows arrive as one JSON document; with `strict`, nothing is
    # inserted when any job names an undeclared queue; duplicates of an unfinished unique_key are
    # skipped (their existing job is looked up afterwards); and the push notice is sent in the
    # same statement.
    missing = (
        "SELECT DISTINCT i.queue FROM input i"
        " WHERE NOT EXISTS (SELECT 1 FROM {queues} q WHERE q.name = i.queue)"
        if strict
        else "SELECT NULL::text AS queue WHERE false"
    )
    notice = (
        ", notice AS (SELECT pg_notify(%s, %s) FROM ins LIMIT 1)"
        if notify
        else ", notice AS (SELECT NULL WHERE false)"
    )
    return tables.q(
        """
        WITH input AS (
            SELECT (r->>0)::uuid AS id, r->>1 AS queue, r->>2 AS func, r->3 AS kwargs,
                   (r->>4)::integer AS priority, (r->>5)::integer AS max_attempts,
                   """
        + _sql.micros_to_timestamptz("(r->>6)::bigint")
        + """ AS scheduled_at,
                   r->7 AS limits, r->>8 AS unique_key,
                   r->9 AS meta
            FROM jsonb_array_elements(%s::jsonb) AS r
        ), missing AS ("""
        + missing
        + """
        ), ins AS (
            INSERT INTO {jobs} (id, queue, func, kwargs, priority, max_attempts, scheduled_at,
                                limits, unique_key, meta)
            SELECT * FROM input WHERE NOT EXISTS (SELECT 1 FROM missing)
            ON CONFLICT (unique_key)
                WHERE unique_key IS NOT NULL AND state IN ('pending', 'running', 'retrying')
                DO NOTHING
            RETURNING id
        )"""
        + notice
        + """
        SELECT 'missing', queue FROM missing
        UNION ALL SELECT 'inserted', id::text FROM ins
        UNION ALL SELECT 'notice', '' FROM notice
        """
    )


def _inserted(plan: _PushPlan, rows: list[tuple[Any, ...]], offset: int) -> set[str]:
    missing = sorted(value for kind, value in rows if kind == "missing")
    if missing:
        index = offset + next(i for i, queue in enumerate(plan.queue_of) if queue in missing)
        raise UnknownQueueError(
            f"job {index}: unknown queue {missing[0]!r}: declare it first with "
            f"chancy.declare(Queue({missing[0]!r})); nothing of this batch was pushed"
        )
    return {value for kind, value in rows if kind == "inserted"}


def _existing_query(tables: Tables) -> str:
    key = ("existing", tables.prefix, False, False)
    text = _QUERY_TEXT.get(key)
    if text is None:
        text = _QUERY_TEXT[key] = tables.q(
            "SELECT unique_key, id::text FROM {jobs} WHERE unique_key = ANY(%s)"
            " AND state IN ('pending', 'running', 'retrying')"
        ).as_string(None)
    return text


class _Target:
    """The jobs a bulk operation is about: `refs`, or those `where` matches (`all=True` is
    needed for a filter that matches every job; alone it means `where=JobFilter()`)."""

    def __init__(
        self,
        refs: Sequence[Reference | str] | Reference | str | None,
        where: JobFilter | None,
        all_: bool,
    ) -> None:
        if refs is None and where is None and all_:
            where = JobFilter()
        if (refs is None) == (where is None):
            raise ValueError(
                "pass either the jobs' references or where=JobFilter(...)"
                + (", not both" if refs is not None else "")
            )
        #: Malformed references, reported as skipped.
        self.invalid: dict[str, str] = {}
        self.ids: list[str] | None = None
        if refs is not None:
            if isinstance(refs, str | Reference):
                refs = [refs]
            ids = []
            for ref in refs:
                try:
                    ids.append(_ref_id(ref))
                except (TypeError, ValueError, AttributeError):
                    self.invalid[str(ref)] = "not a job id"
            self.ids = list(dict.fromkeys(ids))
            self.params: dict[str, Any] = {"ids": self.ids}
            self.where = _sql.jobs_where(ids=True)
            self.empty = not self.ids
            return
        if not isinstance(where, JobFilter):
            raise TypeError(f"where: expected a JobFilter, got {where!r}")
        if where.matches_everything and not all_:
            raise ValueError("where: JobFilter() matches every job; pass all=True if you mean it")
        self.params = where.params()
        self.where = _sql.jobs_where(**{name: True for name in self.params})
        self.empty = False

    def result(self, rows: list[tuple[Any, ...]], why: Callable[[str], str]) -> JobsResult:
        done: list[str] = []
        skipped = dict(self.invalid)
        seen: set[str] = set()
        for id_, state, acted in rows:
            if id_ is None:  # the row that makes the notices go out
                continue
            seen.add(id_)
            if acted:
                done.append(id_)
            else:
                skipped[id_] = why(state)
        if self.ids is None:
            done.sort()
        else:
            acted_ids = set(done)
            done = [i for i in self.ids if i in acted_ids]
            for id_ in self.ids:
                if id_ not in seen:
                    skipped[id_] = "no such job"
        return JobsResult(done=done, skipped=skipped)


def _why_running(state: str) -> str:
    return f"job is {state}"


def _why_retry(state: str) -> str:
    if state in ("succeeded", "failed"):
        return "its unique_key is held by an unfinished job"
    return "job is running" if state == "running" else f"job is {state}, not finished"


def _why_purge(state: str) -> str:
    return "job is running (pass include_running=True to delete it)"


def _list_plan(
    queue: str | None,
    state: QueuedJob.State | str | None,
    func: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    after: Reference | str | None,
    error: str | None = None,
) -> dict[str, Any]:
    plan: dict[str, Any] = JobFilter(
        queue=queue, state=state, func=func, since=since, until=until, error=error
    ).params()
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit: expected an integer >= 1, got {limit!r}")
    plan["limit"] = limit
    if after is not None:
        plan["after"] = _ref_id(after)
    return plan


def _pause_params(name: str, resume_at: datetime | timedelta | None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "resume_at": None, "resume_in": None}
    if isinstance(resume_at, timedelta):
        params["resume_in"] = resume_at
    elif isinstance(resume_at, datetime):
        if resume_at.tzinfo is None:
            raise ValueError("resume_at: expected a timezone-aware datetime (or a timedelta)")
        params["resume_at"] = resume_at
    elif resume_at is not None:
        raise ValueError(f"resume_at: expected a datetime, a timedelta or None, got {resume_at!r}")
    return params


class Chancy:
    """A Chancy application: its database, configuration and common operations.

    Use it as `async with Chancy(dsn) as chancy:` (asyncio or trio) or, for the `sync_*`
    methods, as `with Chancy(dsn) as chancy:`. With no `dsn`, `CHANCY_DSN` is used, else an
    embedded PostgreSQL server (see `chancy.embedded`).
    """

    class Executor(enum.StrEnum):
        """Shortcuts for the built-in executors."""

        #: Runs coroutine jobs in the worker's event loop.
        Async = "chancy.executors.asyncex.AsyncExecutor"
        #: The default: runs each job in a supervised child process.
        Process = "chancy.executors.process.ProcessExecutor"
        #: Runs jobs in sub-interpreters (Python 3.13+).
        SubInterpreter = "chancy.executors.sub.SubInterpreterExecutor"
        #: Runs jobs on worker threads.
        Threaded = "chancy.executors.thread.ThreadedExecutor"

    def __init__(
        self,
        dsn: str | None = None,
        *,
        plugins: list[Plugin] | None = None,
        prefix: str = "chancy_",
        min_connection_pool_size: int = 1,
        max_connection_pool_size: int = 10,
        poll_reconnect_timeout: int = 300,
        notifications: bool = True,
        strict_queues: bool = False,
        log: logging.Logger | None = None,
        listen_dsn: str | None = None,
        connection_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(min_connection_pool_size, int) or min_connection_pool_size < 0:
            raise ValueError("min_connection_pool_size: expected an integer >= 0")
        if not isinstance(max_connection_pool_size, int) or max_connection_pool_size < max(
            1, min_connection_pool_size
        ):
            raise ValueError(
                "max_connection_pool_size: expected an integer >= 1 and >= min_connection_pool_size"
            )
        if not isinstance(poll_reconnect_timeout, int | float) or poll_reconnect_timeout <= 0:
            raise ValueError("poll_reconnect_timeout: expected seconds > 0")
        #: The logger used for all application logging.
        self.log = log or (
            logging.getLogger("chancy")
            if logging.getLogger("chancy").handlers
            else setup_default_logger()
        )
        if dsn is None:
            from chancy.embedded import default_dsn

            dsn = default_dsn()
        #: The DSN to connect to the database.
        self.dsn = dsn
        #: A prefix of every table name (namespaces several apps or tenants in one database).
        self.prefix = prefix
        self.tables = Tables(prefix)
        self.min_connection_pool_size = min_connection_pool_size
        self.max_connection_pool_size = max_connection_pool_size
        self.poll_reconnect_timeout = poll_reconnect_timeout
        #: Whether NOTIFY/LISTEN is used (turn off behind pgbouncer in transaction mode).
        self.notifications = notifications
        #: Whether a push naming an undeclared queue is refused (`UnknownQueueError`). Off by
        #: default: such jobs wait `pending` until a queue of that name is declared.
        self.strict_queues = strict_queues
        #: The plugins this app runs; `None` gives the defaults (leadership, recovery, pruning).
        self.plugins: list[Plugin] = check_plugins(
            _default_plugins() if plugins is None else list(plugins)
        )
        if connection_kwargs is not None and not isinstance(connection_kwargs, dict):
            raise ValueError("connection_kwargs: expected a dict of psycopg.connect() arguments")
        #: Where the notification listener connects (default: `dsn`). Behind a pooler in
        #: transaction mode, give the server itself here: LISTEN needs a session of its own.
        self.listen_dsn = listen_dsn
        #: Extra `psycopg.connect()` arguments for every connection, e.g.
        #: ``{"prepare_threshold": None}`` behind a transaction-mode pooler.
        self.connection_kwargs = dict(connection_kwargs or {})
        # Plugins that change jobs as they are pushed (on_push overridden).
        self._push_hooks = tuple(
            p.on_push for p in self.plugins if type(p).on_push is not Plugin.on_push
        )
        #: The backend-neutral database access used by Chancy's own code.
        self.db = Database(
            dsn,
            min_size=min_connection_pool_size,
            max_size=max_connection_pool_size,
            connect_timeout=poll_reconnect_timeout,
            log=self.log,
            listen_dsn=listen_dsn,
            connection_kwargs=self.connection_kwargs,
        )

    def __repr__(self) -> str:
        return f"<Chancy prefix={self.prefix!r}>"

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Chancy:
        await self.db.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.db.close()

    def __enter__(self) -> Chancy:
        self.db.open_sync()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.db.close_sync()

    @property
    def pool(self) -> AsyncConnectionPool:
        """The asyncio connection pool (open inside `async with chancy` on asyncio)."""
        if self.db.async_pool is None:
            raise RuntimeError(
                "the asyncio pool is not open: use `async with chancy:` under asyncio"
            )
        return self.db.async_pool

    @property
    def sync_pool(self) -> ConnectionPool:
        """The synchronous connection pool (opened on first use)."""
        return self.db.open_sync()

    def table(self, name: str) -> sql.Identifier:
        """The identifier of this app's table `name` (prefix included)."""
        return self.tables(name)

    # -- running an operation ----------------------------------------------------------------
    #
    # Each operation below is one coroutine `_name(conn, ...)` written against `Conn`; the async
    # method runs it on a pooled connection of the running backend, the `sync_*` twin on a
    # blocking connection of the sync pool (see `chancy._blocking`). One copy of SQL and logic.

    async def _run(self, operation: Callable[[Conn], Awaitable[T]]) -> T:
        async with self.db.connection() as conn:
            return await operation(conn)

    def _run_sync(self, operation: Callable[[Conn], Coroutine[Any, Any, T]]) -> T:
        with self.sync_pool.connection() as raw:
            return run_blocking(operation(BlockingConn(raw)))

    # -- migrations ------------------------------------------------------------------------

    def _components(self) -> list[tuple[str, list[Any]]]:
        return [(CORE, CORE_MIGRATIONS)] + [
            (f"plugin:{p.identifier}", p.migrations()) for p in self.plugins if p.migrations()
        ]

    async def migrate(self, *, to_version: int | None = None) -> None:
        """Migrate the core schema (to `to_version`, up or down) and every plugin's tables.

        Runs under an advisory lock, so processes migrating at once are safe. With
        `to_version=0` the plugins' tables are removed first, then the core's.
        """
        await self._run(functools.partial(self._migrate, to_version=to_version))

    def sync_migrate(self, *, to_version: int | None = None) -> None:
        """Synchronous `migrate`."""
        self._run_sync(functools.partial(self._migrate, to_version=to_version))

    async def _migrate(self, conn: Conn, to_version: int | None) -> None:
        components = self._components()
        if to_version == 0:
            components.reverse()
        for component, migrations in components:
            target = to_version if component == CORE else (0 if to_version == 0 else None)
            before, after = await migrate_component(
                conn, self.tables, component, migrations, target
            )
            if before != after:
                self.log.info("migrated %s from version %d to %d", component, before, after)

    async def schema_versions(self) -> dict[str, tuple[int, int]]:
        """`{component: (applied version, latest version)}` for the core and every plugin."""
        return await self._run(self._schema_versions)

    def sync_schema_versions(self) -> dict[str, tuple[int, int]]:
        """Synchronous `schema_versions`."""
        return self._run_sync(self._schema_versions)

    async def _schema_versions(self, conn: Conn) -> dict[str, tuple[int, int]]:
        return {
            name: (await current_version(conn, self.tables, name), len(migrations))
            for name, migrations in self._components()
        }

    async def is_up_to_date(self) -> bool:
        """True when the core schema and every plugin's tables are at their latest version."""
        return _all_applied(await self.schema_versions())

    def sync_is_up_to_date(self) -> bool:
        """Synchronous `is_up_to_date`."""
        return _all_applied(self.sync_schema_versions())

    # -- queues ----------------------------------------------------------------------------

    def _declare_queries(self, upsert: bool) -> tuple[sql.Composed, sql.Composed]:
        conflict = (
            "DO UPDATE SET concurrency = EXCLUDED.concurrency, tags = EXCLUDED.tags,"
            " state = EXCLUDED.state, executor = EXCLUDED.executor,"
            " executor_options = EXCLUDED.executor_options,"
            " polling_interval = EXCLUDED.polling_interval, rate_limit = EXCLUDED.rate_limit,"
            " rate_limit_window = EXCLUDED.rate_limit_window, resume_at = EXCLUDED.resume_at,"
            " updated_at = now()"
            if upsert
            else "DO NOTHING"
        )
        insert = self.tables.q(
            "INSERT INTO {queues} (" + _QUEUE_COLUMNS + ") VALUES (%s, %s, %s, %s, %s, %s, %s,"
            " %s, %s, %s) ON CONFLICT (name) " + conflict
        )
        select = self.tables.q("SELECT " + QUEUE_SELECT + " FROM {queues} WHERE name = %s")
        return insert, select

    async def declare(self, queue: Queue, *, upsert: bool = False) -> Queue:
        """Declare `queue`; with `upsert`, replace the settings of an existing queue.

        Returns the queue as it is in the database. Raises `ValueError` when the queue's
        executor does not import, is not an executor, or does not take an `executor_options`
        key (checked here, so that a worker is not the first to find out).
        """
        _check_executor(queue)
        return await self._run(functools.partial(self._declare, queue=queue, upsert=upsert))

    def sync_declare(self, queue: Queue, *, upsert: bool = False) -> Queue:
        """Synchronous `declare`."""
        _check_executor(queue)
        return self._run_sync(functools.partial(self._declare, queue=queue, upsert=upsert))

    async def _declare(self, conn: Conn, queue: Queue, upsert: bool) -> Queue:
        insert, select = self._declare_queries(upsert)
        async with conn.transaction():
            await conn.execute(insert, _queue_row(queue))
            row = await conn.fetchone(select, (queue.name,))
            await self._notify_conn(conn, "queue.changed", {"q": queue.name})
        assert row is not None
        return _queue_from_row(row)

    async def declare_ex(self, cursor: AsyncCursor, queue: Queue, *, upsert: bool = False) -> Queue:
        """`declare` on the caller's cursor (inside the caller's transaction)."""
        _check_executor(queue)
        insert, select = self._declare_queries(upsert)
        await cursor.execute(insert, _queue_row(queue))
        await cursor.execute(select, (queue.name,))
        row = await cursor.fetchone()
        await self.notify(cursor, "queue.changed", {"q": queue.name})
        assert row is not None
        return _queue_from_row(row)

    async def get_queue(self, name: str) -> Queue:
        """The queue called `name`, or `UnknownQueueError`."""
        return await self._run(functools.partial(self._get_queue, name=name))

    def sync_get_queue(self, name: str) -> Queue:
        """Synchronous `get_queue`."""
        return self._run_sync(functools.partial(self._get_queue, name=name))

    async def _get_queue(self, conn: Conn, name: str) -> Queue:
        row = await conn.fetchone(
            self.tables.q("SELECT " + QUEUE_SELECT + " FROM {queues} WHERE name = %s"), (name,)
        )
        if row is None:
            raise UnknownQueueError(f"unknown queue {name!r}")
        return _queue_from_row(row)

    async def get_all_queues(self) -> list[Queue]:
        """Every declared queue, whatever its state or the workers it is assigned to."""
        return await self._run(self._get_all_queues)

    def sync_get_all_queues(self) -> list[Queue]:
        """Synchronous `get_all_queues`."""
        return self._run_sync(self._get_all_queues)

    async def _get_all_queues(self, conn: Conn) -> list[Queue]:
        rows = await conn.fetchall(
            self.tables.q("SELECT " + QUEUE_SELECT + " FROM {queues} ORDER BY name")
        )
        queues = []
        for row in rows:
            try:
                queues.append(_queue_from_row(row))
            except (ValueError, TypeError, KeyError) as exc:  # a row written by hand
                self.log.error("queue %r is skipped: its row is malformed: %s", row[0], exc)
        return queues

    async def get_undeclared_queues(self) -> dict[str, int]:
        """`{queue name: unfinished jobs}` for queues that hold jobs but are not declared.

        Pushing to an undeclared queue is accepted (the jobs wait until it is declared), so a
        typo in a queue name shows up here (and in `chancy queue list`).
        """
        return await self._run(self._get_undeclared_queues)

    def sync_get_undeclared_queues(self) -> dict[str, int]:
        """Synchronous `get_undeclared_queues`."""
        return self._run_sync(self._get_undeclared_queues)

    async def _get_undeclared_queues(self, conn: Conn) -> dict[str, int]:
        rows = await conn.fetchall(
            self.tables.q(
                "SELECT j.queue, count(*) FROM {jobs} j"
                " WHERE j.state IN ('pending', 'retrying', 'running')"
                " AND NOT EXISTS (SELECT 1 FROM {queues} q WHERE q.name = j.queue)"
                " GROUP BY j.queue ORDER BY j.queue"
            )
        )
        return {name: count for name, count in rows}

    async def set_queue_state(self, name: str, state: Queue.State) -> Queue:
        """Pause or resume a queue (workers react without a restart)."""
        return await self._run(functools.partial(self._set_queue_state, name=name, state=state))

    def sync_set_queue_state(self, name: str, state: Queue.State) -> Queue:
        """Synchronous `set_queue_state`."""
        return self._run_sync(functools.partial(self._set_queue_state, name=name, state=state))

    async def _set_queue_state(self, conn: Conn, name: str, state: Queue.State) -> Queue:
        queue = await self._get_queue(conn, name)
        queue.state = Queue.State(state)
        queue.resume_at = None
        return await self._declare(conn, queue, upsert=True)

    async def delete_queue(self, name: str, *, purge_jobs: bool = True) -> None:
        """Delete the queue `name` and, unless `purge_jobs=False`, all of its jobs."""
        await self._run(functools.partial(self._delete_queue, name=name, purge_jobs=purge_jobs))

    def sync_delete_queue(self, name: str, *, purge_jobs: bool = True) -> None:
        """Synchronous `delete_queue`."""
        self._run_sync(functools.partial(self._delete_queue, name=name, purge_jobs=purge_jobs))

    async def _delete_queue(self, conn: Conn, name: str, purge_jobs: bool) -> None:
        async with conn.transaction():
            row = await conn.fetchone(
                self.tables.q("DELETE FROM {queues} WHERE name = %s RETURNING name"), (name,)
            )
            if row is None:
                raise UnknownQueueError(f"unknown queue {name!r}")
            if purge_jobs:
                await conn.execute(self.tables.q("DELETE FROM {jobs} WHERE queue = %s"), (name,))
            await self._notify_conn(conn, "queue.changed", {"q": name})

    # -- pushing ---------------------------------------------------------------------------

    async def push(self, job: Job | Any) -> Reference:
        """Push one job (a `Job` or an `@job` function); returns its reference.

        Pushing a job whose `unique_key` is held by an unfinished job returns that job's
        reference instead of adding a second one.
        """
        async with self.db.connection() as conn:
            refs = await self._push_conn(conn, [job], 0)
        return refs[0]

    async def push_many(
        self, jobs: Sequence[Job | Any], *, batch_size: int = 1000
    ) -> AsyncIterator[list[Reference]]:
        """Push jobs in batches of `batch_size`, each batch committed on its own.

        Yields one list of references per committed batch. A batch holding a bad job writes
        nothing of that batch, and the error names the job's index in `jobs`.
        """
        if batch_size < 1:
            raise ValueError("batch_size: expected an integer >= 1")
        async with self.db.connection() as conn:
            for offset in range(0, len(jobs), batch_size):
                yield await self._push_conn(conn, jobs[offset : offset + batch_size], offset)

    async def push_many_ex(self, cursor: AsyncCursor, jobs: Sequence[Job | Any]) -> list[Reference]:
        """Push jobs with the caller's cursor, inside the caller's transaction."""

        async def run(query: str, params: Any) -> _Rows:
            await cursor.execute(query, params)
            return await cursor.fetchall()

        refs: list[Reference] = []
        for offset in range(0, len(jobs), 1000):
            refs += await _run_flow(self._push_flow(jobs[offset : offset + 1000], offset), run)
        return refs

    async def _push_conn(
        self, conn: Conn, jobs: Sequence[Job | Any], offset: int
    ) -> list[Reference]:
        return await _run_flow(self._push_flow(jobs, offset), conn.fetchall)

    def _push_flow(self, jobs: Sequence[Job | Any], offset: int) -> _PushFlow:
        """The push of one batch as the statements it runs: every push (async or sync, on a
        connection or in the caller's cursor) drives this one generator, so they cannot differ.

        Jobs skipped for a `unique_key` get the holder's reference. When a holder finishes
        between the insert and the lookup of its key, the jobs skipped for it (only those:
        the rest of the batch is in) are pushed again, and the first of them holds the key.
        """
        tables, notify, strict = self.tables, self.notifications, self.strict_queues
        plan = _PushPlan(jobs, offset, self._push_hooks)
        inserted = _inserted(plan, (yield plan.params(tables, notify, strict)), offset)
        existing: dict[str, str] = {}
        keys = plan.conflicting_keys(inserted)
        while keys:
            found: dict[str, str] = dict((yield _existing_query(tables), (keys,)))
            existing.update(found)
            if len(found) == len(keys):
                break
            again = _PushPlan(plan.skipped_holding(set(keys) - set(found), inserted), offset)
            pushed = _inserted(again, (yield again.params(tables, notify, strict)), offset)
            existing.update(
                (key, id_)
                for id_, key in zip(again.ids, again.unique_keys, strict=True)
                if id_ in pushed and key is not None
            )
            keys = again.conflicting_keys(pushed)  # lost the key again: look it up again
        return plan.references(inserted, existing)

    def sync_push(self, job: Job | Any) -> Reference:
        """Synchronous `push`."""
        with self.sync_pool.connection() as conn, conn.cursor() as cursor:
            return self.sync_push_many_ex(cursor, [job])[0]

    def sync_push_many(
        self, jobs: Sequence[Job | Any], *, batch_size: int = 1000
    ) -> Iterator[list[Reference]]:
        """Synchronous `push_many`: yields one list of references per committed batch."""
        if batch_size < 1:
            raise ValueError("batch_size: expected an integer >= 1")
        with self.sync_pool.connection() as conn:
            for offset in range(0, len(jobs), batch_size):
                with conn.transaction(), conn.cursor() as cursor:
                    refs = self._sync_push_cursor(
                        cursor, jobs[offset : offset + batch_size], offset
                    )
                yield refs

    def sync_push_many_ex(self, cursor: Cursor, jobs: Sequence[Job | Any]) -> list[Reference]:
        """Synchronous `push_many_ex`: push with the caller's cursor and transaction."""
        refs: list[Reference] = []
        for offset in range(0, len(jobs), 1000):
            refs += self._sync_push_cursor(cursor, jobs[offset : offset + 1000], offset)
        return refs

    def _sync_push_cursor(
        self, cursor: Cursor, jobs: Sequence[Job | Any], offset: int
    ) -> list[Reference]:
        return _sync_run_flow(self._push_flow(jobs, offset), cursor)

    # -- following jobs ----------------------------------------------------------------------

    async def get_job(self, ref: Reference | str) -> QueuedJob | None:
        """The job `ref` points to, or None when it no longer exists."""
        return await self._run(functools.partial(self._get_job, ref=ref))

    def sync_get_job(self, ref: Reference | str) -> QueuedJob | None:
        """Synchronous `get_job`."""
        return self._run_sync(functools.partial(self._get_job, ref=ref))

    async def _get_job(self, conn: Conn, ref: Reference | str) -> QueuedJob | None:
        row = await conn.fetchone(
            self.tables.q("SELECT {columns} FROM {jobs} WHERE id = %s", columns=text_job_columns()),
            (_ref_id(ref),),
        )
        return read_job(row) if row else None

    async def get_jobs(self, refs: Sequence[Reference | str]) -> list[QueuedJob]:
        """The jobs `refs` point to, in the order of `refs`; jobs that no longer exist are left
        out."""
        return await self._run(functools.partial(self._get_jobs, refs=refs))

    def sync_get_jobs(self, refs: Sequence[Reference | str]) -> list[QueuedJob]:
        """Synchronous `get_jobs`."""
        return self._run_sync(functools.partial(self._get_jobs, refs=refs))

    async def _get_jobs(self, conn: Conn, refs: Sequence[Reference | str]) -> list[QueuedJob]:
        ids = [_ref_id(ref) for ref in refs]
        if not ids:
            return []
        rows = await conn.fetchall(
            self.tables.q(
                "SELECT {columns} FROM {jobs} WHERE id = ANY(%s::uuid[])",
                columns=text_job_columns(),
            ),
            (ids,),
        )
        by_id = {job.id: job for job in map(read_job, rows)}
        return [by_id[i] for i in ids if i in by_id]

    async def wait_for_job(
        self,
        ref: Reference | str,
        *,
        interval: int | float = 1,
        timeout: float | int | None = None,
        states: Collection[QueuedJob.State | str] | None = None,
    ) -> QueuedJob | None:
        """Wait until the job is in one of `states` (default: SUCCEEDED or FAILED) and return
        it (None if it no longer exists).

        Raises `TimeoutError` after `timeout` seconds. With notifications on, it wakes on the
        job's completion notice; `interval` is then only the fallback poll (a job starting to
        run sends no notice: waiting for RUNNING sees it within `interval`).
        """
        jobs = await self.wait_for_jobs([ref], interval=interval, timeout=timeout, states=states)
        return jobs[0] if jobs else None

    def sync_wait_for_job(
        self,
        ref: Reference | str,
        *,
        interval: int | float = 1,
        timeout: float | int | None = None,
        states: Collection[QueuedJob.State | str] | None = None,
    ) -> QueuedJob | None:
        """Synchronous `wait_for_job` (blocks the calling thread)."""
        jobs = self.sync_wait_for_jobs([ref], interval=interval, timeout=timeout, states=states)
        return jobs[0] if jobs else None

    async def wait_for_jobs(
        self,
        refs: Sequence[Reference | str],
        *,
        interval: int | float = 1,
        timeout: float | int | None = None,
        states: Collection[QueuedJob.State | str] | None = None,
    ) -> list[QueuedJob]:
        """Wait until every job of `refs` is in one of `states` (default: finished), like
        `wait_for_job`; returns them in the order of `refs`, leaving out jobs that no longer
        exist. Raises `TimeoutError` after `timeout` seconds."""
        wanted = _wanted_states(states)
        deadline = None if timeout is None else time.monotonic() + timeout
        # The deadline is kept by `_wait_for_jobs`; this scope only bounds waiting for a pooled
        # connection, so it ends a little later (cancelling a query would break the connection).
        with anyio.fail_after(timeout + 1 if timeout is not None else math.inf):
            return await self._run(
                functools.partial(
                    self._wait_for_jobs,
                    refs=refs,
                    states=wanted,
                    interval=interval,
                    deadline=deadline,
                    blocking=False,
                )
            )

    def sync_wait_for_jobs(
        self,
        refs: Sequence[Reference | str],
        *,
        interval: int | float = 1,
        timeout: float | int | None = None,
        states: Collection[QueuedJob.State | str] | None = None,
    ) -> list[QueuedJob]:
        """Synchronous `wait_for_jobs` (blocks the calling thread)."""
        wanted = _wanted_states(states)
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._run_sync(
            functools.partial(
                self._wait_for_jobs,
                refs=refs,
                states=wanted,
                interval=interval,
                deadline=deadline,
                blocking=True,
            )
        )

    async def _wait_for_jobs(
        self,
        conn: Conn,
        refs: Sequence[Reference | str],
        states: frozenset[QueuedJob.State],
        interval: float,
        deadline: float | None,
        blocking: bool,
    ) -> list[QueuedJob]:
        ids = [_ref_id(ref) for ref in refs]
        sleep = blocking_sleep if blocking else anyio.sleep
        jobs: dict[str, QueuedJob] = {}
        waiting: set[str] = set(ids)

        async def load() -> None:
            fresh = {job.id: job for job in await self._get_jobs(conn, sorted(waiting))}
            for id_ in list(waiting):
                if id_ in fresh:
                    jobs[id_] = fresh[id_]
                else:
                    jobs.pop(id_, None)
            waiting.intersection_update(i for i, job in fresh.items() if job.state not in states)

        def pause() -> float:
            if deadline is None:
                return interval
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                first = sorted(waiting)[0]
                raise TimeoutError(
                    f"job {first} did not finish in time"
                    if len(ids) == 1
                    else f"{len(waiting)} of {len(ids)} jobs (first {first}) did not finish in time"
                )
            return min(interval, remaining)

        if not self.notifications:
            await load()
            while waiting:
                await sleep(pause())
                await load()
            return [jobs[i] for i in ids if i in jobs]
        channel = sql.Identifier(self.tables.channel)
        await conn.execute(sql.SQL("LISTEN {}").format(channel))
        try:
            await load()
            while waiting:
                notices = await conn.notifies(timeout=pause())
                if not notices or any(_mentions(payload, waiting) for _, payload in notices):
                    await load()
            return [jobs[i] for i in ids if i in jobs]
        finally:
            with contextlib.nullcontext() if blocking else anyio.CancelScope(shield=True):
                await conn.execute(sql.SQL("UNLISTEN {}").format(channel))
                await conn.notifies(timeout=0.0)

    async def cancel_job(self, ref: Reference | str) -> None:
        """Cancel a job: a waiting job ends FAILED at once; a running one is stopped by the
        worker that holds it (which needs notifications) and ends FAILED. Never retried."""
        await self._run(functools.partial(self._cancel_job, ref=ref))

    def sync_cancel_job(self, ref: Reference | str) -> None:
        """Synchronous `cancel_job`."""
        self._run_sync(functools.partial(self._cancel_job, ref=ref))

    async def _cancel_job(self, conn: Conn, ref: Reference | str) -> None:
        ref_id = _ref_id(ref)
        async with conn.transaction():
            await conn.execute(
                self.tables.q(
                    """
                    UPDATE {jobs} SET
                        state = CASE WHEN state = 'running' THEN state ELSE 'failed' END,
                        completed_at = CASE WHEN state = 'running' THEN NULL ELSE now() END,
                        errors = CASE WHEN state = 'running' THEN errors ELSE errors ||
                            jsonb_build_array(jsonb_build_object(
                                'attempt', attempts, 'traceback', 'cancelled before it ran',
                                'at', now()))
                            END,
                        cancel_requested = true
                    WHERE id = %s AND state IN ('pending', 'retrying', 'running')
                    """
                ),
                (ref_id,),
            )
            await self._notify_conn(conn, "job.cancelled", {"id": ref_id})

    async def get_all_workers(self) -> list[dict[str, Any]]:
        """Every worker known to the cluster, whatever its status."""
        return await self._run(self._get_all_workers)

    def sync_get_all_workers(self) -> list[dict[str, Any]]:
        """Synchronous `get_all_workers`."""
        return self._run_sync(self._get_all_workers)

    async def _get_all_workers(self, conn: Conn) -> list[dict[str, Any]]:
        rows = await conn.fetchall(
            self.tables.q(
                "SELECT " + ", ".join(_WORKER_COLUMNS) + " FROM {workers} ORDER BY worker_id"
            )
        )
        return [dict(zip(_WORKER_COLUMNS, row, strict=True)) for row in rows]

    # -- operating on jobs and queues ---------------------------------------------------------
    #
    # Each bulk operation is one statement (`chancy._sql`): it locks its targets (the jobs of
    # `refs`, or those `where` matches), acts on those it may, sends one "pushed" notice per
    # queue whose jobs became runnable, and reports every target. `_operate` runs it on any
    # `Conn`: a pooled one, a blocking one (`sync_*`), or the caller's cursor (`*_ex`).

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        state: QueuedJob.State | str | None = None,
        func: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        after: Reference | str | None = None,
        error: str | None = None,
    ) -> list[QueuedJob]:
        """The newest jobs first (by push time), at most `limit`, matching every filter given
        (`since`/`until` bound the push time; `error` is text one of the job's errors contains,
        in any case). For the next page pass the last id seen as `after`."""
        plan = _list_plan(queue, state, func, since, until, limit, after, error)
        return await self._run(functools.partial(self._list_jobs, plan=plan))

    def sync_list_jobs(
        self,
        *,
        queue: str | None = None,
        state: QueuedJob.State | str | None = None,
        func: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        after: Reference | str | None = None,
        error: str | None = None,
    ) -> list[QueuedJob]:
        """Synchronous `list_jobs`."""
        plan = _list_plan(queue, state, func, since, until, limit, after, error)
        return self._run_sync(functools.partial(self._list_jobs, plan=plan))

    async def _list_jobs(self, conn: Conn, plan: dict[str, Any]) -> list[QueuedJob]:
        where = _sql.jobs_where(**{name: True for name in plan if name != "limit"})
        rows = await conn.fetchall(_sql.list_jobs_query(self.tables, where), plan)
        return [_sql.read_job(row) for row in rows]

    async def retry_jobs(
        self,
        refs: Sequence[Reference | str] | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
    ) -> JobsResult:
        """Run finished jobs again: each SUCCEEDED or FAILED job of `refs` (or matching `where`)
        becomes pending now, with its attempts reset to 0 and its errors kept. Others are
        skipped (with the reason)."""
        return await self._run(self._retry_op(_Target(refs, where, all)))

    def sync_retry_jobs(
        self,
        refs: Sequence[Reference | str] | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
    ) -> JobsResult:
        """Synchronous `retry_jobs`."""
        return self._run_sync(self._retry_op(_Target(refs, where, all)))

    async def retry_jobs_ex(
        self,
        cursor: AsyncCursor,
        refs: Sequence[Reference | str] | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
    ) -> JobsResult:
        """`retry_jobs` on the caller's cursor (inside the caller's transaction)."""
        return await self._retry_op(_Target(refs, where, all))(CursorConn(cursor))

    def sync_retry_jobs_ex(
        self,
        cursor: Cursor,
        refs: Sequence[Reference | str] | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
    ) -> JobsResult:
        """Synchronous `retry_jobs_ex`."""
        return run_blocking(self._retry_op(_Target(refs, where, all))(BlockingCursorConn(cursor)))

    def _retry_op(self, target: _Target) -> Callable[[Conn], Coroutine[Any, Any, JobsResult]]:
        return functools.partial(
            self._operate, query=_sql.retry_jobs_query, target=target, params={}, why=_why_retry
        )

    async def purge_jobs(
        self,
        refs: Sequence[Reference | str] | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
        include_running: bool = False,
    ) -> JobsResult:
        """Delete the jobs of `refs` (or matching `where`). A running job is skipped unless
        `include_running`: then it is deleted too and its worker asked to stop it."""
        return await self._run(self._purge_op(_Target(refs, where, all), include_running))

    def sync_purge_jobs(
        self,
        refs: Sequence[Reference | str] | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
        include_running: bool = False,
    ) -> JobsResult:
        """Synchronous `purge_jobs`."""
        return self._run_sync(self._purge_op(_Target(refs, where, all), include_running))

    async def purge_jobs_ex(
        self,
        cursor: AsyncCursor,
        refs: Sequence[Reference | str] | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
        include_running: bool = False,
    ) -> JobsResult:
        """`purge_jobs` on the caller's cursor (inside the caller's transaction)."""
        op = self._purge_op(_Target(refs, where, all), include_running)
        return await op(CursorConn(cursor))

    def sync_purge_jobs_ex(
        self,
        cursor: Cursor,
        refs: Sequence[Reference | str] | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
        include_running: bool = False,
    ) -> JobsResult:
        """Synchronous `purge_jobs_ex`."""
        op = self._purge_op(_Target(refs, where, all), include_running)
        return run_blocking(op(BlockingCursorConn(cursor)))

    def _purge_op(
        self, target: _Target, include_running: bool
    ) -> Callable[[Conn], Coroutine[Any, Any, JobsResult]]:
        return functools.partial(
            self._operate,
            query=_sql.purge_jobs_query,
            target=target,
            params={"include_running": bool(include_running)},
            why=_why_purge,
        )

    async def move_jobs(
        self,
        refs: Sequence[Reference | str] | None = None,
        queue: str | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
    ) -> JobsResult:
        """Move the jobs of `refs` (or matching `where`) that are not running to `queue`.

        Like `push`, an undeclared `queue` is accepted (its jobs wait for it to be declared)
        unless the app has `strict_queues`: then `UnknownQueueError`, and nothing moves.
        """
        return await self._run(self._move_op(_Target(refs, where, all), queue))

    def sync_move_jobs(
        self,
        refs: Sequence[Reference | str] | None = None,
        queue: str | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
    ) -> JobsResult:
        """Synchronous `move_jobs`."""
        return self._run_sync(self._move_op(_Target(refs, where, all), queue))

    async def move_jobs_ex(
        self,
        cursor: AsyncCursor,
        refs: Sequence[Reference | str] | None = None,
        queue: str | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
    ) -> JobsResult:
        """`move_jobs` on the caller's cursor (inside the caller's transaction)."""
        return await self._move_op(_Target(refs, where, all), queue)(CursorConn(cursor))

    def sync_move_jobs_ex(
        self,
        cursor: Cursor,
        refs: Sequence[Reference | str] | None = None,
        queue: str | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
    ) -> JobsResult:
        """Synchronous `move_jobs_ex`."""
        op = self._move_op(_Target(refs, where, all), queue)
        return run_blocking(op(BlockingCursorConn(cursor)))

    def _move_op(
        self, target: _Target, queue: str | None
    ) -> Callable[[Conn], Coroutine[Any, Any, JobsResult]]:
        if not isinstance(queue, str) or not queue:
            raise ValueError(f"queue: expected the name of the queue to move to, got {queue!r}")
        return functools.partial(
            self._operate,
            query=_sql.move_jobs_query,
            target=target,
            params={"to_queue": queue},
            why=_why_running,
            check_queue=self.strict_queues,
        )

    async def reprioritize_jobs(
        self,
        refs: Sequence[Reference | str] | None = None,
        priority: int | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
    ) -> JobsResult:
        """Give the jobs of `refs` (or matching `where`) that are not running `priority`
        (higher runs first)."""
        return await self._run(self._reprioritize_op(_Target(refs, where, all), priority))

    def sync_reprioritize_jobs(
        self,
        refs: Sequence[Reference | str] | None = None,
        priority: int | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
    ) -> JobsResult:
        """Synchronous `reprioritize_jobs`."""
        return self._run_sync(self._reprioritize_op(_Target(refs, where, all), priority))

    async def reprioritize_jobs_ex(
        self,
        cursor: AsyncCursor,
        refs: Sequence[Reference | str] | None = None,
        priority: int | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
    ) -> JobsResult:
        """`reprioritize_jobs` on the caller's cursor (inside the caller's transaction)."""
        op = self._reprioritize_op(_Target(refs, where, all), priority)
        return await op(CursorConn(cursor))

    def sync_reprioritize_jobs_ex(
        self,
        cursor: Cursor,
        refs: Sequence[Reference | str] | None = None,
        priority: int | None = None,
        *,
        where: JobFilter | None = None,
        all: bool = False,
    ) -> JobsResult:
        """Synchronous `reprioritize_jobs_ex`."""
        op = self._reprioritize_op(_Target(refs, where, all), priority)
        return run_blocking(op(BlockingCursorConn(cursor)))

    def _reprioritize_op(
        self, target: _Target, priority: int | None
    ) -> Callable[[Conn], Coroutine[Any, Any, JobsResult]]:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ValueError(f"priority: expected an integer, got {priority!r}")
        if not -_INT32 <= priority <= _INT32:
            raise ValueError(f"priority: {priority} is out of range")
        return functools.partial(
            self._operate,
            query=_sql.reprioritize_jobs_query,
            target=target,
            params={"priority": priority},
            why=_why_running,
        )

    async def _operate(
        self,
        conn: Conn,
        query: Callable[[Tables, sql.Composable], sql.Composed],
        target: _Target,
        params: dict[str, Any],
        why: Callable[[str], str],
        check_queue: bool = False,
    ) -> JobsResult:
        if target.empty:
            return target.result([], why)
        params = {
            **target.params,
            **params,
            "channel": self.tables.channel,
            "notify": self.notifications,
        }
        if check_queue and not await conn.fetchone(_sql.queue_exists_query(self.tables), params):
            raise UnknownQueueError(
                f"unknown queue {params['to_queue']!r}: declare it first with "
                f"chancy.declare(Queue({params['to_queue']!r})); no job was moved"
            )
        rows = await conn.fetchall(query(self.tables, target.where), params)
        return target.result(rows, why)

    # -- queue operations ---------------------------------------------------------------------

    async def pause_queue(
        self, name: str, *, resume_at: datetime | timedelta | None = None
    ) -> Queue:
        """Pause the queue `name`: workers stop taking its jobs (running ones finish).

        With `resume_at` (a timezone-aware datetime, or a timedelta from now by the database's
        clock) the queue resumes by itself then, on every worker; else it stays paused until
        `resume_queue`. Returns the queue; raises `UnknownQueueError`.
        """
        params = _pause_params(name, resume_at)
        return await self._run(functools.partial(self._queue_update, pause=True, params=params))

    def sync_pause_queue(
        self, name: str, *, resume_at: datetime | timedelta | None = None
    ) -> Queue:
        """Synchronous `pause_queue`."""
        params = _pause_params(name, resume_at)
        return self._run_sync(functools.partial(self._queue_update, pause=True, params=params))

    async def resume_queue(self, name: str) -> Queue:
        """Resume the queue `name` now (also cancels a pending `resume_at`)."""
        params = {"name": name}
        return await self._run(functools.partial(self._queue_update, pause=False, params=params))

    def sync_resume_queue(self, name: str) -> Queue:
        """Synchronous `resume_queue`."""
        params = {"name": name}
        return self._run_sync(functools.partial(self._queue_update, pause=False, params=params))

    async def _queue_update(self, conn: Conn, pause: bool, params: dict[str, Any]) -> Queue:
        query = (_sql.pause_queue_query if pause else _sql.resume_queue_query)(self.tables)
        async with conn.transaction():
            row = await conn.fetchone(query, params)
            if row is None:
                raise UnknownQueueError(f"unknown queue {params['name']!r}")
            await self._notify_conn(conn, "queue.changed", {"q": params["name"]})
        return _queue_from_row(row)

    async def queue_stats(self, name: str | None = None) -> list[QueueStats]:
        """Figures of every queue (declared, or holding unfinished or recently finished jobs),
        or only of `name`: jobs waiting and running, how long the oldest runnable job has
        waited, jobs finished in the last minute and hour, and the live workers running it.

        Cheap: it reads the unfinished jobs and the last hour of finished ones, never the
        whole history (so there are no all-time totals of finished jobs)."""
        return await self._run(functools.partial(self._queue_stats, name=name))

    def sync_queue_stats(self, name: str | None = None) -> list[QueueStats]:
        """Synchronous `queue_stats`."""
        return self._run_sync(functools.partial(self._queue_stats, name=name))

    async def _queue_stats(self, conn: Conn, name: str | None) -> list[QueueStats]:
        rows = await conn.fetchall(
            _sql.queue_stats_query(self.tables, name is not None), {"name": name}
        )
        return [
            QueueStats(
                name=row[0],
                declared=row[1],
                state=Queue.State(row[2]) if row[2] else None,
                resume_at=row[3],
                pending=row[4],
                retrying=row[5],
                running=row[6],
                oldest_runnable_age=float(row[7]) if row[7] is not None else None,
                succeeded_last_minute=row[8],
                failed_last_minute=row[9],
                succeeded_last_hour=row[10],
                failed_last_hour=row[11],
                workers=tuple(row[12]),
            )
            for row in rows
        ]

    async def metrics(
        self,
        *,
        queue: str | None = None,
        since: datetime | timedelta | None = None,
        resolution: int = 60,
    ) -> list[Any]:
        """The metric history written by the `Metrics` plugin (chancy.plugins.metrics):
        points of `resolution` (10, 60 or 3600 s) since `since`, oldest first."""
        from chancy.plugins.metrics import history

        return await history(self, queue=queue, since=since, resolution=resolution)

    # -- notifications -----------------------------------------------------------------------

    def _payload(self, event_name: str, payload: dict[str, Any]) -> str:
        return event(event_name, **payload)

    async def _notify_conn(self, conn: Conn, event_name: str, payload: dict[str, Any]) -> None:
        if self.notifications:
            await conn.execute(
                "SELECT pg_notify(%s, %s)",
                (self.tables.channel, self._payload(event_name, payload)),
            )

    async def notify(self, cursor: AsyncCursor, event: str, payload: dict[str, Any]) -> None:
        """Send `event` with `payload` to every listening worker (no-op without notifications)."""
        if self.notifications:
            await cursor.execute(
                "SELECT pg_notify(%s, %s)", (self.tables.channel, self._payload(event, payload))
            )

    def sync_notify(self, cursor: Cursor, event: str, payload: dict[str, Any]) -> None:
        """Synchronous `notify`."""
        if self.notifications:
            cursor.execute(
                "SELECT pg_notify(%s, %s)", (self.tables.channel, self._payload(event, payload))
            )


def app_from_env() -> Chancy:
    """A `Chancy` for `CHANCY_DSN` (or the embedded server), for scripts and the quickstart."""
    return Chancy(os.environ.get("CHANCY_DSN") or None)


__all__ = ["Chancy", "app_from_env", "setup_default_logger"]
