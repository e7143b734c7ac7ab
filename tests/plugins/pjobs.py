"""Job functions pushed by the plugin tests; importable by workers in other processes."""

from __future__ import annotations

import os
import time

from chancy.job import QueuedJob


def noop() -> None:
    return None


def _parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def record(path: str) -> None:
    """Append ``pid:parent pid:grandparent pid`` to `path` (a job in a child process names
    its worker too: its parent, or its grandparent when the child was forked by the
    worker's fork server)."""
    parent = os.getppid()
    with open(path, "a") as f:
        f.write(f"{os.getpid()}:{parent}:{_parent_of(parent)}\n")


def slow_first(path: str, seconds: float = 60) -> None:
    """Record the run; the first run (empty file before) then blocks for `seconds`."""
    first = not os.path.exists(path) or os.path.getsize(path) == 0
    record(path)
    if first:
        time.sleep(seconds)


def fail(path: str) -> None:
    """Record the run, then raise."""
    record(path)
    raise RuntimeError("planned failure")


async def fail_timed(path: str) -> None:
    """Record the wall-clock time of this run, then raise."""
    with open(path, "a") as f:
        f.write(f"{time.time()}\n")
    raise RuntimeError("planned failure")


async def sleep_forever() -> None:
    import anyio

    await anyio.sleep_forever()


def record_job(path: str, pause: float = 0.0, *, job: QueuedJob) -> None:
    """Append the running job's id to `path`, then sleep `pause` seconds."""
    with open(path, "a") as f:
        f.write(f"{job.id}\n")
    if pause:
        time.sleep(pause)


async def async_ok() -> int:
    return 1


async def async_fail() -> None:
    raise ValueError("no good")
