"""A ``django-tasks`` backend that pushes tasks to Chancy (docs/django.md says what maps).

::

    TASKS = {"default": {"BACKEND": "chancy.contrib.django.tasks.ChancyBackend",
                         "QUEUES": ["default", "emails"],
                         "OPTIONS": {"max_attempts": 3}}}

A task becomes one Chancy job: ``func`` is ``<task module path>.call`` (the `Task` object's
own ``call``, which a worker imports like any job function, so allow-lists name the task's
module), its arguments are bound to the function's parameter names and stored as the job's
``kwargs``, ``queue_name`` is the queue, ``priority`` the priority (both run higher first),
``run_after`` the job's ``scheduled_at``. The result id is the job id; the return value is the
job's ``result``.
"""

from __future__ import annotations

import inspect
import uuid
from typing import TYPE_CHECKING, Any

from django_tasks.backends.base import BaseTaskBackend
from django_tasks.base import Task, TaskError, TaskResult, TaskResultStatus
from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist

from chancy.contrib.django.conf import get_app
from chancy.job import Job

if TYPE_CHECKING:
    from chancy.app import Chancy

#: Chancy's job state -> the value of django-tasks' `TaskResultStatus`.
_STATUS = {
    "pending": "READY",
    "retrying": "READY",
    "running": "RUNNING",
    "succeeded": "SUCCESSFUL",
    "failed": "FAILED",
}

_COLUMNS = (
    "id::text, func, queue, kwargs, priority, state, attempts, scheduled_at, created_at,"
    " started_at, completed_at, errors, result, taken_by, meta"
)


def bind_kwargs(task: Task[Any, Any], args: Any, kwargs: Any) -> dict[str, Any]:
    """The call's arguments as keyword arguments by the function's parameter names (Chancy
    jobs take keyword arguments only); raises InvalidTaskError for what cannot be named."""
    try:
        bound = inspect.signature(task.func).bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidTaskError(f"{task.module_path}: {exc}") from None
    named: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        elif kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            if kind is inspect.Parameter.POSITIONAL_ONLY or value:
                raise InvalidTaskError(
                    f"{task.module_path}: Chancy passes keyword arguments only; "
                    f"parameter {name!r} cannot take one"
                )
        else:
            named[name] = value
    return named


def _error(entry: Any) -> TaskError:
    text = str(entry.get("traceback") or "") if isinstance(entry, dict) else str(entry)
    last = text.strip().splitlines()[-1] if text.strip() else "Exception"
    name = last.split(":", 1)[0].strip() or "Exception"
    if "." not in name:
        name = f"builtins.{name}"
    return TaskError(exception_class_path=name, traceback=text)


class ChancyBackend(BaseTaskBackend):
    """Pushes ``django-tasks`` tasks to Chancy as jobs; results are read from the jobs table."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.max_attempts = int(self.options.get("max_attempts", 1))

    @property
    def app(self) -> Chancy:
        """The project's Chancy app (`chancy.contrib.django.get_app`)."""
        return get_app()

    def validate_task(self, task: Task[Any, Any]) -> None:
        super().validate_task(task)
        if task.takes_context:
            raise InvalidTaskError("ChancyBackend does not support takes_context")

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        self.validate_task(task)
        extra: dict[str, Any] = {}
        if task.run_after is not None:
            extra["scheduled_at"] = task.run_after
        job = Job(
            func=f"{task.module_path}.call",
            queue=task.queue_name,
            kwargs=bind_kwargs(task, args, kwargs),
            priority=task.priority,
            max_attempts=self.max_attempts,
            meta={"django_task": task.module_path, "django_backend": self.alias},
            **extra,
        )
        ref = self.app.sync_push(job)
        return self._read(ref.identifier, task)

    def get_result(self, result_id: str) -> TaskResult[Any]:
        return self._read(result_id, None)

    def _read(self, result_id: str, enqueued: Task[Any, Any] | None) -> TaskResult[Any]:
        try:
            job_id = str(uuid.UUID(str(result_id)))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        app = self.app
        with app.sync_pool.connection() as conn:
            row = conn.execute(
                app.tables.q("SELECT " + _COLUMNS + " FROM {jobs} WHERE id = %s"), (job_id,)
            ).fetchone()
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        (
            id_,
            _func,
            queue,
            job_kwargs,
            priority,
            state,
            attempts,
            scheduled_at,
            created_at,
            started_at,
            completed_at,
            errors,
            result_value,
            taken_by,
            meta,
        ) = row
        path = (meta or {}).get("django_task")
        task: Any = enqueued
        try:
            from django.utils.module_loading import import_string

            if task is None and path:
                task = import_string(path)
        except ImportError:
            task = None
        if not isinstance(task, Task):
            raise TaskResultDoesNotExist(f"{result_id}: not a django-tasks job")
        if enqueued is None:
            task = task.using(priority=priority, queue_name=queue, backend=self.alias)
            if scheduled_at is not None and scheduled_at > created_at:
                task = task.using(run_after=scheduled_at)
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=id_,
            status=TaskResultStatus(_STATUS[state]),
            enqueued_at=created_at,
            started_at=started_at,
            finished_at=completed_at,
            last_attempted_at=started_at,
            args=[],
            kwargs=dict(job_kwargs or {}),
            backend=self.alias,
            errors=[_error(e) for e in errors or []],
            worker_ids=[taken_by or ""] * attempts,
        )
        object.__setattr__(result, "_return_value", result_value)
        return result
