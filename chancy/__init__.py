"""Chancy: a Postgres-backed job queue run as an actor-style multiprocess supervisor.

The names below are imported on first use, so that importing a submodule (a child worker
process imports `chancy.supervisor.child`) does not pull in psycopg, anyio or even `chancy.job`.

The submodule `chancy.job` and the decorator `job` share a name. The import system sets the
package attribute `job` to the submodule when the submodule is first imported (e.g. by
`from chancy import Chancy`), which would hide the decorator. The package's module class
therefore refuses to bind a submodule over an exported name: `chancy.job` and
`from chancy import job` are the decorator whatever was imported first (as in upstream Chancy).
Reach the module itself with `from chancy.job import ...` or `sys.modules["chancy.job"]`.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chancy.admin import JobFilter, JobsResult, QueueStats
    from chancy.app import Chancy, setup_default_logger
    from chancy.job import ErrorT, IsAJob, Job, Limit, QueuedJob, Reference, job
    from chancy.queue import Queue
    from chancy.worker import Worker

_EXPORTS = {
    "JobFilter": "chancy.admin",
    "JobsResult": "chancy.admin",
    "QueueStats": "chancy.admin",
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
    "JobFilter",
    "JobsResult",
    "Limit",
    "Queue",
    "QueueStats",
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


class _Package(types.ModuleType):
    """The `chancy` package: a submodule never shadows an exported name (see the docstring)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return  # the import system binding `chancy.job` (the module) over `job`
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
