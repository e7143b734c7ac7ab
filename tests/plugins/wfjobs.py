"""Job functions of the workflow tests; importable by workers in other processes."""

from __future__ import annotations

import os
import time
from typing import Any

from chancy.job import QueuedJob
from chancy.plugins.workflow import dependency_results, failed_dependencies, step_of


def record(path: str, name: str) -> None:
    """Append ``name pid`` to the file `path` (one line per run)."""
    with open(path, "a") as f:
        f.write(f"{name} {os.getpid()}\n")


def mark(path: str, name: str) -> str:
    record(path, name)
    return name


def value(x: Any) -> Any:
    return x


def add(a: int, b: int) -> int:
    return a + b


def total(*, job: QueuedJob) -> int:
    """The sum of the dependencies' results."""
    return sum(dependency_results(job).values())


def seen(*, job: QueuedJob) -> dict[str, Any]:
    """What a step sees of its dependencies."""
    return {
        "results": dependency_results(job),
        "failed": failed_dependencies(job),
        "step": list(step_of(job) or ()),
    }


def boom(path: str = "", name: str = "boom") -> None:
    if path:
        record(path, name)
    raise RuntimeError(f"{name} failed")


def fail_once(path: str, name: str) -> str:
    """Fail the first run (no line in `path` yet for `name`), succeed afterwards."""
    before = open(path).read().split() if os.path.exists(path) else []
    record(path, name)
    if name not in before:
        raise RuntimeError(f"{name}: first run fails")
    return name


def slow_first(path: str, name: str, seconds: float = 60) -> str:
    """Record the run; the first run of `name` then blocks for `seconds`."""
    before = open(path).read().split() if os.path.exists(path) else []
    record(path, name)
    if name not in before:
        time.sleep(seconds)
    return name


def sleepy(seconds: float) -> None:
    time.sleep(seconds)


async def anoop() -> None:
    return None


def on_row(x: str, user_id: int) -> list[Any]:
    """A job pushed by the trigger plugin for a changed row."""
    return [x, user_id]
