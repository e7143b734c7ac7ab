"""The jobs the benchmarks run; importable by name from workers and child processes."""

from __future__ import annotations

import os
import time


def noop() -> None:
    """Does nothing: what is measured is the queue, not the job."""


async def anoop() -> None:
    """Does nothing, as a coroutine (for the async executor)."""


def sleep_forever(marker: str = "") -> None:
    """Sleeps past any time limit (records when it started in `marker`, if given)."""
    if marker:
        with open(marker, "w") as f:
            f.write(f"{os.getpid()} {time.time()}")
    while True:
        time.sleep(0.05)


def _own_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def grow_past(limit_mib: int, marker: str) -> None:
    """Allocates memory past `limit_mib` of RSS, then waits to be killed. Writes "pid time" to
    `marker` just before the allocation that crosses the limit (the monitor may kill the job
    within that allocation). Linux: RSS read from /proc/self/statm."""
    blocks = []
    step = 4 * 1024 * 1024
    limit = limit_mib * 1024 * 1024
    while _own_rss() + step <= limit:
        blocks.append(b"\x01" * step)  # written, so its pages count in RSS
    with open(marker, "w") as f:
        f.write(f"{os.getpid()} {time.time()}")
    while _own_rss() <= limit + step:
        blocks.append(b"\x01" * step)
    while True:
        time.sleep(0.05)


def sleep_ignoring_stop(marker: str) -> None:
    """Sleeps forever and swallows whatever is raised in it (a job that will not stop)."""
    with open(marker, "w") as f:
        f.write(f"{os.getpid()} {time.time()}")
    while True:
        try:
            while True:
                time.sleep(0.05)
        except BaseException:
            pass
