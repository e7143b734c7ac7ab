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


def grow_past(limit_mib: int, marker: str) -> None:
    """Allocates memory until past `limit_mib`, writes "pid time" to `marker`, then waits."""
    blocks = []
    step = 8 * 1024 * 1024
    target = (limit_mib + 16) * 1024 * 1024
    allocated = 0
    while allocated < target:
        blocks.append(b"\x01" * step)  # written, so its pages count in RSS
        allocated += step
    with open(marker, "w") as f:
        f.write(f"{os.getpid()} {time.time()}")
    while True:
        time.sleep(0.05)
