"""Jobs: the immutable description of work (`Job`), a job in the queue (`QueuedJob`) and the
handles around them (`Reference`, `Limit`, `ErrorT`, `@job`)."""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib
import inspect
import os
import secrets
import struct
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NotRequired, ParamSpec, Protocol, TypedDict, TypeVar

from chancy.errors import JobImportError

if TYPE_CHECKING:
    from collections.abc import Callable

P = ParamSpec("P")
R = TypeVar("R", covariant=True)


class ErrorT(TypedDict):
    """One failed attempt of a job: its number, the formatted error and (for attempts that
    failed since Chancy 0.1 stored it) when it ended, as ISO 8601."""

    attempt: int
    traceback: str
    at: NotRequired[str]


@dataclasses.dataclass(frozen=True)
class Limit:
    """A resource limit applied to a job: MEMORY in bytes, TIME in seconds."""

    class Type(enum.Enum):
        MEMORY = "memory"
        TIME = "time"

    type_: Type
    value: int

    def __post_init__(self) -> None:
        if not isinstance(self.type_, Limit.Type):
            try:
                object.__setattr__(self, "type_", Limit.Type(self.type_))
            except ValueError:
                raise ValueError(f"Limit.type_: unknown limit type {self.type_!r}") from None
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise ValueError(f"Limit.value: expected a number, got {type(self.value).__name__}")
        if self.value <= 0:
            raise ValueError(f"Limit.value: must be positive, got {self.value!r}")

    def serialize(self) -> dict[str, Any]:
        return {"type": self.type_.value, "value": self.value}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> Limit:
        return cls(data["type"], data["value"])  # __post_init__ names a bad type or value


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    """Datetimes without a timezone are taken to be UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _parse_dt(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Job:
    """An immutable, stateless unit of work that can be pushed onto a queue and run elsewhere."""

    func: str
    queue: str = "default"
    kwargs: dict[str, Any] | None = dataclasses.field(default_factory=dict)
    priority: int = 0
    max_attempts: int = 1
    scheduled_at: datetime = dataclasses.field(default_factory=_now)
    limits: list[Limit] = dataclasses.field(default_factory=list)
    unique_key: str | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.func, str) or not self.func:
            raise ValueError("Job.func: expected an importable name such as 'pkg.module.function'")
        if not isinstance(self.queue, str) or not self.queue:
            raise ValueError("Job.queue: expected a non-empty queue name")
        if isinstance(self.scheduled_at, datetime):
            object.__setattr__(self, "scheduled_at", _aware(self.scheduled_at))

    @classmethod
    def from_func(cls, func: Callable[..., Any], **kwargs: Any) -> Job:
        """Create a job from a function, working out its importable name.

        Lambdas, closures, functions defined in `__main__` and anything else that cannot be
        imported by name again in another process are refused with a `JobImportError`.
        """
        path = importable_name(func)
        target = import_function(path)
        if target is not func and getattr(target, "__wrapped__", None) is not func:
            raise JobImportError(f"{path!r} does not import back to the function given")
        return cls(func=path, **kwargs)

    def with_kwargs(self, **kwargs: Any) -> Job:
        return dataclasses.replace(self, kwargs=kwargs)

    def with_limits(self, limits: list[Limit]) -> Job:
        return dataclasses.replace(self, limits=list(limits))

    def with_max_attempts(self, max_attempts: int) -> Job:
        return dataclasses.replace(self, max_attempts=max_attempts)

    def with_meta(self, meta: dict[str, Any]) -> Job:
        return dataclasses.replace(self, meta=dict(meta))

    def with_priority(self, priority: int) -> Job:
        return dataclasses.replace(self, priority=priority)

    def with_queue(self, queue: str) -> Job:
        return dataclasses.replace(self, queue=queue)

    def with_scheduled_at(self, scheduled_at: datetime) -> Job:
        return dataclasses.replace(self, scheduled_at=scheduled_at)

    def with_unique_key(self, unique_key: str) -> Job:
        return dataclasses.replace(self, unique_key=unique_key)

    def pack(self) -> dict[str, Any]:
        """Pack the job into a JSON-safe dictionary (see `unpack`)."""
        return {
            "func": self.func,
            "queue": self.queue,
            "kwargs": self.kwargs,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "scheduled_at": _dt(self.scheduled_at),
            "limits": [limit.serialize() for limit in self.limits],
            "unique_key": self.unique_key,
            "meta": self.meta,
        }

    @classmethod
    def _fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "func": data["func"],
            "queue": data.get("queue", "default"),
            "kwargs": data.get("kwargs") or {},
            "priority": data.get("priority", 0),
            "max_attempts": data.get("max_attempts", 1),
            "scheduled_at": _parse_dt(data.get("scheduled_at")) or _now(),
            "limits": [Limit.deserialize(limit) for limit in data.get("limits") or []],
            "unique_key": data.get("unique_key"),
            "meta": data.get("meta") or {},
        }

    @classmethod
    def unpack(cls, data: dict[str, Any]) -> Job:
        """Unpack a dictionary made by `pack` into a Job."""
        return Job(**Job._fields_from(data))


@dataclasses.dataclass(frozen=True, kw_only=True)
class QueuedJob(Job):
    """A job that has been pushed onto a queue, with its state."""

    class State(enum.Enum):
        PENDING = "pending"
        RUNNING = "running"
        RETRYING = "retrying"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id: str
    started_at: datetime | None = None
    completed_at: datetime | None = None
    attempts: int = 0
    state: State = State.PENDING
    errors: list[ErrorT] = dataclasses.field(default_factory=list)
    #: What the job's function returned, as stored (JSON): None until the job succeeded, and
    #: None when it returned None. Kept as long as the job's row (see the pruner).
    result: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.state, QueuedJob.State):
            object.__setattr__(self, "state", QueuedJob.State(self.state))
        object.__setattr__(self, "id", str(self.id))

    @property
    def is_finished(self) -> bool:
        return self.state in (QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED)

    def pack(self) -> dict[str, Any]:
        return {
            **super().pack(),
            "id": self.id,
            "started_at": _dt(self.started_at),
            "completed_at": _dt(self.completed_at),
            "attempts": self.attempts,
            "state": self.state.value,
            "errors": list(self.errors),
            "result": self.result,
        }

    @classmethod
    def unpack(cls, data: dict[str, Any]) -> QueuedJob:
        return QueuedJob(
            **Job._fields_from(data),
            id=data["id"],
            started_at=_parse_dt(data.get("started_at")),
            completed_at=_parse_dt(data.get("completed_at")),
            attempts=data.get("attempts", 0),
            state=QueuedJob.State(data.get("state", "pending")),
            errors=list(data.get("errors") or []),
            result=data.get("result"),
        )


class Reference:
    """References a job in the queue; returned by `push`, usable with `get_job`/`wait_for_job`.

    Hashable, and equal to another Reference or to the job's id given as `str` or `UUID`.
    """

    __slots__ = ("identifier",)

    def __init__(self, identifier: str | uuid.UUID) -> None:
        self.identifier = str(uuid.UUID(str(identifier)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reference):
            return self.identifier == other.identifier
        if isinstance(other, uuid.UUID):
            return self.identifier == str(other)
        if isinstance(other, str):
            try:
                return self.identifier == str(uuid.UUID(other))
            except ValueError:
                return False
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.identifier)

    def __repr__(self) -> str:
        return f"<Reference({self.identifier!r})>"

    def __str__(self) -> str:
        return self.identifier


class IsAJob(Protocol[P, R]):
    """A function decorated with `@job`: still callable, with the job description in `.job`,
    and `.bind(...)`: the job with these arguments, checked against the function's own
    signature (by the type checker, and at run time)."""

    job: Job

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def bind(self, *args: P.args, **kwargs: P.kwargs) -> Job: ...


def job(**options: Any) -> Callable[[Callable[P, R]], IsAJob[P, R]]:
    """Turn a function into a job: it stays callable and gains a `.job` attribute.

    `options` are `Job` fields (queue, priority, max_attempts, limits, ...).
    """

    def decorate(func: Callable[P, R]) -> IsAJob[P, R]:
        path = importable_name(func)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return func(*args, **kwargs)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await func(*args, **kwargs)

            wrapper = async_wrapper  # type: ignore[assignment]

        wrapper.job = Job(func=path, **options)  # type: ignore[attr-defined]
        signature = inspect.signature(func)

        def bind(*args: P.args, **kwargs: P.kwargs) -> Job:
            # Stored jobs carry keyword arguments only: positional ones get their names here.
            # A `QueuedJob` parameter may be left out (the worker passes it).
            try:
                arguments = signature.bind_partial(*args, **kwargs).arguments
            except TypeError as exc:
                raise TypeError(f"{path}.bind: {exc}") from None
            job: Job = wrapper.job  # type: ignore[attr-defined]
            return job.with_kwargs(**arguments)

        wrapper.bind = bind  # type: ignore[attr-defined]
        _REGISTERED.add(path)
        return wrapper  # type: ignore[return-value]

    return decorate


_REGISTERED: set[str] = set()


def registered_functions() -> frozenset[str]:
    """The dotted paths of every `@job` function defined in this process so far."""
    return frozenset(_REGISTERED)


def importable_name(func: Callable[..., Any]) -> str:
    """The dotted name another process can import `func` by, or a `JobImportError`."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not callable(func) or module is None or qualname is None:
        raise JobImportError(f"{func!r} is not a module-level function")
    if qualname == "<lambda>" or "<lambda>" in qualname:
        raise JobImportError("lambdas cannot be jobs: define the function at module level")
    if "<locals>" in qualname:
        raise JobImportError(
            f"{qualname} is a closure or nested function: define it at module level"
        )
    if module == "__main__":
        raise JobImportError(
            f"{qualname} is defined in __main__, which a worker cannot import: move it to a module"
        )
    return f"{module}.{qualname}"


def import_function(path: str) -> Callable[..., Any]:
    """Import `pkg.module.function` (or `pkg.module:function`), with a clear error if it fails."""
    if not isinstance(path, str) or not path:
        raise JobImportError(f"invalid function path {path!r}")
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
        candidates = [(module_name, attr_path)]
    else:
        parts = path.split(".")
        candidates = [
            (".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)
        ]
    if not candidates or not all(m and a for m, a in candidates):
        raise JobImportError(f"{path!r} is not a dotted path such as 'pkg.module.function'")
    last_error: Exception | None = None
    for module_name, attr_path in candidates:
        try:
            target: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                last_error = exc
                continue
            raise JobImportError(f"importing {module_name!r} for {path!r} failed: {exc}") from exc
        first, *_ = attrs = attr_path.split(".")
        if isinstance(last_error, ModuleNotFoundError) and not hasattr(target, first):
            # A longer module path was tried first and is missing: say so, not "no attribute".
            raise JobImportError(
                f"cannot import {path!r}: no module named {last_error.name!r}"
            ) from None
        try:
            for attr in attrs:
                target = getattr(target, attr)
        except AttributeError:
            raise JobImportError(f"module {module_name!r} has no attribute {attr_path!r}") from None
        if not callable(target):
            raise JobImportError(f"{path!r} is not callable")
        return target  # type: ignore[no-any-return]  # callable() narrowed it
    raise JobImportError(f"cannot import {path!r}: {last_error}")


_last_ms = 0
_seq = 0


def uuid7_strings(count: int) -> list[str]:
    """`count` time-ordered UUIDv7 ids in canonical text form, for one batch: one clock read
    and one draw of randomness for all of them (ids of a batch share the millisecond and
    count up in its 12-bit sequence, rolling into the next millisecond), so they sort after
    every id made before and in batch order."""
    global _last_ms, _seq
    ms = time.time_ns() // 1_000_000
    if ms <= _last_ms:
        ms, seq = _last_ms, _seq + 1
    else:
        seq = secrets.randbits(8)
    draws = struct.unpack(f">{count}Q", os.urandom(8 * count))
    mask62 = (1 << 62) - 1
    version_variant = 0x7 << 76 | 0b10 << 62
    out = []
    for draw in draws:
        if seq > 0xFFF:
            ms, seq = ms + 1, 0
        value = (ms & 0xFFFFFFFFFFFF) << 80 | version_variant | seq << 64 | (draw & mask62)
        h = f"{value:032x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
        seq += 1
    _last_ms, _seq = ms, seq - 1
    return out


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (version 7): ids made later in this process sort after earlier ones."""
    global _last_ms, _seq
    ms = time.time_ns() // 1_000_000
    if ms <= _last_ms:
        ms = _last_ms
        _seq += 1
        if _seq > 0xFFF:
            ms += 1
            _seq = 0
    else:
        _seq = secrets.randbits(8)
    _last_ms = ms
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | _seq << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


__all__ = [
    "ErrorT",
    "IsAJob",
    "Job",
    "JobImportError",
    "Limit",
    "QueuedJob",
    "Reference",
    "import_function",
    "importable_name",
    "job",
    "registered_functions",
    "uuid7",
]
