"""Chancy: a Postgres-backed job queue run as an actor-style multiprocess supervisor."""

from chancy.app import Chancy, setup_default_logger
from chancy.job import ErrorT, IsAJob, Job, Limit, QueuedJob, Reference, job
from chancy.queue import Queue

__all__ = [
    "Chancy",
    "ErrorT",
    "IsAJob",
    "Job",
    "Limit",
    "Queue",
    "QueuedJob",
    "Reference",
    "Worker",
    "job",
    "setup_default_logger",
]


def __getattr__(name: str) -> object:
    # The worker is imported on first use, so code that only pushes jobs stays light.
    if name == "Worker":
        from chancy.worker import Worker

        return Worker
    raise AttributeError(f"module 'chancy' has no attribute {name!r}")
