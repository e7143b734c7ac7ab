"""Chancy: a Postgres-backed job queue run as an actor-style multiprocess supervisor.

The names below are imported on first use, so that importing a submodule (a child worker
process imports `chancy.supervisor.child` and `chancy.job`) does not pull in psycopg or anyio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chancy.app import Chancy, setup_default_logger
    from chancy.job import ErrorT, IsAJob, Job, Limit, QueuedJob, Reference, job
    from chancy.queue import Queue
    from chancy.worker import Worker

_EXPORTS = {
    "Chancy": "chancy.app",
    "setup_default_logger": "chancy.app",
    "ErrorT": "chancy.job",
    "IsAJob": "chancy.job",
    "Job": "chancy.job",
    "Limit": "chancy.job",
    "QueuedJob": "chancy.job",
    "Reference": "chancy.job",
    "job": "chancy.job",
    "Queue": "chancy.queue",
    "Worker": "chancy.worker",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chancy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
