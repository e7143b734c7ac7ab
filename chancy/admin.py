"""The operator's types: which jobs a bulk operation targets, what it did, and queue figures.

Used by `Chancy.list_jobs`, `retry_jobs`, `purge_jobs`, `move_jobs`, `reprioritize_jobs` and
`queue_stats`.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from chancy.job import QueuedJob

if TYPE_CHECKING:
    from chancy.queue import Queue


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
        raise ValueError(f"{name}: expected a timezone-aware datetime, got {value!r}")
    return value


def id_bound(moment: datetime) -> str:
    """The smallest time-ordered (UUIDv7) job id of a job pushed at `moment` (to the
    millisecond): `id >= id_bound(t)` means "pushed at or after t"."""
    ms = max(0, int(moment.timestamp() * 1000))
    return str(uuid.UUID(f"{ms:012x}70008000000000000000"))


@dataclasses.dataclass(frozen=True)
class JobFilter:
    """Which jobs: every field given must match; `since`/`until` bound the time a job was
    pushed (read from its time-ordered id; `until` excluded); `error` is text that one of the
    job's stored errors (tracebacks) contains, compared without regard to case.

    A filter with no field matches every job: the bulk operations then want `all=True`.
    """

    queue: str | None = None
    state: QueuedJob.State | str | None = None
    func: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        for name in ("queue", "func", "error"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"JobFilter.{name}: expected a non-empty string, got {value!r}")
        if self.state is not None:
            try:
                object.__setattr__(self, "state", QueuedJob.State(self.state))
            except ValueError:
                states = ", ".join(s.value for s in QueuedJob.State)
                raise ValueError(
                    f"JobFilter.state: expected one of {states}, got {self.state!r}"
                ) from None
        _aware("JobFilter.since", self.since)
        _aware("JobFilter.until", self.until)

    @property
    def matches_everything(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))

    def params(self) -> dict[str, str]:
        """The bound parameters of the fields given (names as in `chancy._sql.jobs_where`)."""
        params: dict[str, str] = {}
        if self.queue is not None:
            params["queue"] = self.queue
        if self.state is not None:
            params["state"] = QueuedJob.State(self.state).value
        if self.func is not None:
            params["func"] = self.func
        if self.since is not None:
            params["since"] = id_bound(self.since)
        if self.until is not None:
            params["until"] = id_bound(self.until)
        if self.error is not None:
            params["error"] = self.error
        return params


@dataclasses.dataclass(frozen=True)
class JobsResult:
    """What a bulk operation did: the ids of the jobs it acted on, and every other job it was
    asked about (or that its filter matched) with the reason it was skipped."""

    done: list[str] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.done)


@dataclasses.dataclass(frozen=True)
class QueueStats:
    """One queue's figures (see `Chancy.queue_stats`).

    `state` is None for a queue that holds jobs but is not declared. `oldest_runnable_age` is
    how many seconds the longest-waiting job whose time has come has waited (None: none).
    `workers` are the live workers that run the queue now.
    """

    name: str
    declared: bool
    state: Queue.State | None
    resume_at: datetime | None
    pending: int
    retrying: int
    running: int
    oldest_runnable_age: float | None
    succeeded_last_minute: int
    failed_last_minute: int
    succeeded_last_hour: int
    failed_last_hour: int
    workers: tuple[str, ...]


__all__ = ["JobFilter", "JobsResult", "QueueStats"]
