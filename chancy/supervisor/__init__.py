"""The supervisor: child worker processes, their wire, and the limits they run under.

Re-exports are lazy so that the child bootloader (``python -m chancy.supervisor.child``)
does not import anyio or psutil.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ChildStartError, JobCancelled, JobStopped, PoolClosed, TimeLimitExceeded

if TYPE_CHECKING:
    from ._pool import ChildPool, Outcome
    from ._process import ChildProcess

__all__ = [
    "ChildPool",
    "ChildProcess",
    "ChildStartError",
    "JobCancelled",
    "JobStopped",
    "Outcome",
    "PoolClosed",
    "TimeLimitExceeded",
]


def __getattr__(name: str) -> Any:
    if name in ("ChildPool", "Outcome"):
        from . import _pool

        return getattr(_pool, name)
    if name == "ChildProcess":
        from ._process import ChildProcess

        return ChildProcess
    raise AttributeError(name)
