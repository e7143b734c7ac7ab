"""The supervisor's exceptions; they live in :mod:`chancy.errors` (the one tree)."""

from chancy.errors import (
    ChildStartError,
    JobCancelled,
    JobStopped,
    MemoryLimitExceeded,
    PoolClosed,
    TimeLimitExceeded,
    WorkerProcessDied,
)

__all__ = [
    "ChildStartError",
    "JobCancelled",
    "JobStopped",
    "MemoryLimitExceeded",
    "PoolClosed",
    "TimeLimitExceeded",
    "WorkerProcessDied",
]
