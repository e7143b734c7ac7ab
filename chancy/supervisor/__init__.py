"""The supervisor: child worker processes, their wire, and the limits they run under.

* :class:`ChildPool` keeps warm children (``python -m chancy.supervisor.child``: forks of a
  clean template process, the fork server :mod:`chancy.supervisor._forkserver`, or fresh
  interpreters with ``start_method="spawn"``; never a fork of the supervisor) and runs one
  job per child at a time over :mod:`chancy.wire` frames on a dedicated socket;
  :class:`Outcome` says how it ended.
* Limits are enforced from outside: a monitor per busy child sums RSS over the child's
  process tree every ``monitor_interval`` (default 0.05 s) and SIGKILLs the whole tree over
  a memory limit; past a time limit the job gets :class:`TimeLimitExceeded` raised inside
  it and the tree is killed ``stop_grace`` (default 1 s) later. Measured on a 2-core Linux
  box (``tests/supervisor/measure_limits.py``: 600 MiB allocated fast under a 100 MiB
  limit, by the child or by a grandchild it forked; 10 runs per row, asyncio and trio):
  from crossing the limit to the whole tree being gone, median 28-36 ms and at most
  81-93 ms with the default 0.05 s interval; median 80-92 ms, at most 136-167 ms with 0.1 s.
  One sample costs about 0.3 ms (a walk of ``/proc/<pid>/task/*/children``).
* Kernel backstops set in the child before job code is imported: ``RLIMIT_CORE`` = 0, a
  hard ``RLIMIT_CPU`` for time-limited jobs, ``PR_SET_PDEATHSIG``; the child also exits
  when its channel reaches end-of-file, so a SIGKILLed supervisor leaves no child behind.
  Processes a job itself starts die with its child's tree on every path (limits, cancel,
  crash, shutdown); after a SIGKILL of the supervisor, the pool's watchdog process
  (:mod:`chancy.supervisor._watchdog`) kills each child's process group. Only a process
  that a job moved out of its group (``setsid``) and that outlives the child escapes then.

Re-exports are lazy so that the child bootloader does not import anyio or psutil.
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
