"""Queues: named groups of jobs with their concurrency, executor, routing tags and rate limit."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from datetime import datetime
from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass
class Queue:
    """A queue; declare it with `Chancy.declare` before workers will run its jobs.

    A field that cannot be stored raises `ValueError` naming the field.
    """

    class State(enum.Enum):
        #: The queue is active and jobs can be processed.
        ACTIVE = "active"
        #: The queue is paused and no jobs will be processed.
        PAUSED = "paused"

    name: str
    concurrency: int = 1
    tags: set[str] = dataclasses.field(default_factory=lambda: {r".*"})
    state: State = State.ACTIVE
    executor: str = "chancy.executors.process.ProcessExecutor"
    executor_options: dict[str, Any] = dataclasses.field(default_factory=dict[str, Any])
    polling_interval: int = 1
    rate_limit: int | None = None
    rate_limit_window: int | None = None
    #: When a paused queue resumes by itself (see `Chancy.pause_queue`); None: it stays paused
    #: until resumed. Read back as None once the queue is active. Not a setting: two queues
    #: that differ only here are equal, so a queue resuming on time is not restarted.
    resume_at: datetime | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"Queue.name: {self.name!r} is not a valid queue name (1-100 characters: letters, "
                "digits, '_', '.', ':', '-', starting with a letter or digit)"
            )
        if not _is_int(self.concurrency) or self.concurrency < 1:
            raise ValueError(
                f"Queue.concurrency: expected an integer >= 1, got {self.concurrency!r}"
            )
        if isinstance(self.tags, str) or not all(isinstance(t, str) for t in self.tags):
            raise ValueError("Queue.tags: expected a set of strings (regular expressions)")
        self.tags = set(self.tags)
        for tag in self.tags:
            try:
                re.compile(tag)
            except re.error as exc:
                raise ValueError(
                    f"Queue.tags: {tag!r} is not a valid regular expression: {exc}"
                ) from None
        try:
            self.state = Queue.State(self.state)
        except ValueError:
            raise ValueError(
                f"Queue.state: expected 'active' or 'paused', got {self.state!r}"
            ) from None
        if not isinstance(self.executor, str) or "." not in self.executor:
            raise ValueError(
                "Queue.executor: expected the import path of an executor class "
                "(see Chancy.Executor), not " + repr(self.executor)
            )
        if not isinstance(self.executor_options, dict):
            raise ValueError("Queue.executor_options: expected a dict")
        try:
            json.dumps(self.executor_options, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Queue.executor_options: not JSON-serialisable: {exc}") from None
        interval = self.polling_interval
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ValueError(f"Queue.polling_interval: expected seconds > 0, got {interval!r}")
        if self.rate_limit is not None and (not _is_int(self.rate_limit) or self.rate_limit < 1):
            raise ValueError(f"Queue.rate_limit: expected an integer >= 1, got {self.rate_limit!r}")
        window = self.rate_limit_window
        if window is not None and (not _is_int(window) or window < 1):
            raise ValueError(f"Queue.rate_limit_window: expected seconds >= 1, got {window!r}")
        if (self.rate_limit is None) != (window is None):
            raise ValueError(
                "Queue.rate_limit_window: rate_limit and rate_limit_window go together"
            )
        if self.resume_at is not None and (
            not isinstance(self.resume_at, datetime) or self.resume_at.tzinfo is None
        ):
            raise ValueError("Queue.resume_at: expected a timezone-aware datetime or None")

    def pack(self) -> dict[str, Any]:
        """Pack the queue into a JSON-safe dictionary (see `unpack`)."""
        packed: dict[str, Any] = {
            "name": self.name,
            "concurrency": self.concurrency,
            "tags": sorted(self.tags),
            "state": self.state.value,
            "executor": self.executor,
            "executor_options": self.executor_options,
            "polling_interval": self.polling_interval,
            "rate_limit": self.rate_limit,
            "rate_limit_window": self.rate_limit_window,
        }
        if self.resume_at is not None:
            packed["resume_at"] = self.resume_at.isoformat()
        return packed

    @classmethod
    def unpack(cls, data: dict[str, Any]) -> Queue:
        """Unpack a dictionary made by `pack` into a Queue."""
        return cls(
            name=data["name"],
            concurrency=data.get("concurrency", 1),
            tags=set(data.get("tags") or {r".*"}),
            state=Queue.State(data.get("state", "active")),
            executor=data.get("executor", "chancy.executors.process.ProcessExecutor"),
            executor_options=dict(data.get("executor_options") or {}),
            polling_interval=data.get("polling_interval", 1),
            rate_limit=data.get("rate_limit"),
            rate_limit_window=data.get("rate_limit_window"),
            resume_at=datetime.fromisoformat(data["resume_at"]) if data.get("resume_at") else None,
        )
