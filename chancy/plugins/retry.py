"""Retry with exponential backoff.

Without this plugin a failed job with attempts left is retried at once (the seeds' behaviour).
With it, the job waits ``min(limit, base * factor ** (attempt - 1)) + jitter`` seconds, where
`jitter` is a random number of seconds from ``[0, jitter]`` (or ``[low, high]`` for a pair).
Settings come from the plugin's defaults, overridden per job by ``job.meta["retry"]``::

    Job.from_func(fetch_feed, max_attempts=5).with_meta(
        {"retry": {"base": 2, "factor": 3, "limit": 600, "jitter": [0, 5]}}
    )

A cancelled job is never retried: it ends FAILED whatever its attempts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chancy.errors import JobCancelled, RemoteJobError
from chancy.job import QueuedJob
from chancy.plugin import Plugin

if TYPE_CHECKING:
    from chancy.worker import Worker

_KEYS = ("base", "factor", "limit", "jitter")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"retry {name}: expected a number >= 0, got {value!r}")
    return float(value)


def _jitter(value: Any) -> tuple[float, float]:
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ValueError(f"retry jitter: expected seconds or [low, high], got {value!r}")
        low, high = _number("jitter", value[0]), _number("jitter", value[1])
        if low > high:
            raise ValueError(f"retry jitter: low {low} is above high {high}")
        return low, high
    return 0.0, _number("jitter", value)


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Backoff settings: the delay before retry n is ``min(limit, base * factor**(n-1))``
    seconds plus a random jitter in ``[jitter_low, jitter_high]``."""

    base: float = 1.0
    factor: float = 2.0
    limit: float = 300.0
    jitter_low: float = 0.0
    jitter_high: float = 0.0

    @classmethod
    def make(
        cls,
        base: float = 1.0,
        factor: float = 2.0,
        limit: float = 300.0,
        jitter: float | tuple[float, float] | list[float] = 0.0,
    ) -> Backoff:
        low, high = _jitter(jitter)
        return cls(
            _number("base", base), _number("factor", factor), _number("limit", limit), low, high
        )

    def with_overrides(self, settings: Any) -> Backoff:
        """These settings overridden by a job's ``meta["retry"]`` dict."""
        if not settings:
            return self
        if not isinstance(settings, dict):
            raise ValueError(f"meta['retry']: expected a dict, got {type(settings).__name__}")
        unknown = sorted(set(settings) - set(_KEYS))
        if unknown:
            raise ValueError(f"meta['retry']: unknown settings {unknown} (known: {list(_KEYS)})")
        current = {
            "base": self.base,
            "factor": self.factor,
            "limit": self.limit,
            "jitter": (self.jitter_low, self.jitter_high),
        }
        return Backoff.make(**{**current, **settings})

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retrying after failed attempt number `attempt` (from 1)."""
        exponent = max(attempt - 1, 0)
        try:
            raw = self.base * self.factor**exponent
        except OverflowError:
            raw = self.limit
        jitter = (rng or random).uniform(self.jitter_low, self.jitter_high)
        return min(self.limit, raw) + jitter


def _is_cancellation(error: BaseException) -> bool:
    """Chancy's `JobCancelled` (raised, or carried as data from a child), or the event
    loop's own cancellation (asyncio's `CancelledError`, trio's `Cancelled`)."""
    if isinstance(error, JobCancelled | asyncio.CancelledError):
        return True
    if isinstance(error, RemoteJobError):
        return error.type_name == JobCancelled.__name__
    kind = type(error)
    return kind.__name__ == "Cancelled" and kind.__module__.split(".")[0] == "trio"


def is_cancelled(job: QueuedJob, error: BaseException | None) -> bool:
    """Whether the job ended because it was cancelled (then it is never retried)."""
    if job.meta.get("cancelled"):
        return True
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if getattr(error, "cancelled", False) is True or _is_cancellation(error):
            return True
        error = error.__cause__ or error.__context__
    return False


class Retry(Plugin):
    """Retries failed jobs that have attempts left after an exponential backoff.

    :param base: seconds before the first retry.
    :param factor: multiplier applied for every further attempt.
    :param limit: the longest delay, in seconds (before jitter).
    :param jitter: random extra seconds: a maximum, or a ``(low, high)`` pair.
    """

    identifier = "retry"

    def __init__(
        self,
        *,
        base: float = 1.0,
        factor: float = 2.0,
        limit: float = 300.0,
        jitter: float | tuple[float, float] = 0.0,
    ) -> None:
        self.backoff = Backoff.make(base, factor, limit, jitter)

    def next_scheduled_at(self, job: QueuedJob, now: datetime | None = None) -> datetime:
        """When `job`, which just failed attempt `job.attempts`, should run again."""
        now = now or datetime.now(UTC)
        return now + timedelta(seconds=self.delay_for(job.attempts, job.meta))

    def delay_for(self, attempts: int, meta: dict[str, Any]) -> float:
        """Seconds to wait before retrying a job that failed attempt `attempts` (its
        `meta["retry"]` overrides the plugin's settings); used for rescued jobs too."""
        try:
            backoff = self.backoff.with_overrides(meta.get("retry"))
        except ValueError:
            backoff = self.backoff  # a bad per-job setting must not lose the job
        return backoff.delay(attempts)

    async def on_job_completed(
        self, job: QueuedJob, worker: Worker, *, error: BaseException | None
    ) -> QueuedJob:
        if job.state != QueuedJob.State.RETRYING:
            return job
        if is_cancelled(job, error):
            return dataclasses.replace(
                job, state=QueuedJob.State.FAILED, completed_at=datetime.now(UTC)
            )
        return dataclasses.replace(job, scheduled_at=self.next_scheduled_at(job))
