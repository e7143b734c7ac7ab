"""Job functions for the worker tests (importable by name: tests/ is on sys.path)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from datetime import UTC, datetime

import anyio
import anyio.lowlevel

from chancy.job import QueuedJob

#: Executions seen in this process, by label (tests read and reset it).
RUNS: dict[str, list] = defaultdict(list)
_LOCK = threading.Lock()
#: Events a job can wait on (tests set them).
GATES: dict[str, threading.Event] = defaultdict(threading.Event)


def record(label: str, value: object = None) -> None:
    with _LOCK:
        RUNS[label].append(value)


def reset() -> None:
    with _LOCK:
        RUNS.clear()
        GATES.clear()


async def async_record(label: str, value: object = None) -> str:
    record(label, value)
    return "ok"


def sync_record(label: str, value: object = None) -> str:
    record(label, value)
    return "ok"


async def async_fail(label: str = "fail") -> None:
    record(label)
    raise RuntimeError("boom from async_fail")


def sync_fail(label: str = "fail") -> None:
    record(label)
    raise ValueError("boom from sync_fail")


async def async_sleep(label: str, seconds: float) -> None:
    record(label, "start")
    await anyio.sleep(seconds)
    record(label, "end")


def sync_sleep(label: str, seconds: float) -> None:
    record(label, "start")
    time.sleep(seconds)
    record(label, "end")


def sync_wait_gate(label: str, gate: str, timeout: float = 30) -> None:
    record(label, "start")
    GATES[gate].wait(timeout)
    record(label, "end")


async def async_meta(label: str, *, job: QueuedJob) -> None:
    job.meta["seen_id"] = job.id
    job.meta["attempt"] = job.attempts
    record(label, job.id)


def sync_meta(label: str, *, job: QueuedJob) -> None:
    job.meta["thread"] = threading.current_thread().name
    record(label, job.id)


async def async_noop() -> None:
    return None


def sync_noop() -> None:
    return None


async def count_run(label: str, n: int) -> None:
    record(label, n)


async def async_wait_gate(label: str, gate: str, timeout: float = 30) -> None:
    record(label, "start")
    with anyio.move_on_after(timeout):
        while not GATES[gate].is_set():
            await anyio.sleep(0.01)
    record(label, "end")


async def async_bad_meta(kind: str, *, job: QueuedJob) -> None:
    job.meta["value"] = "nul\x00inside" if kind == "nul" else object()


async def asyncio_only(label: str) -> None:
    """An asyncio-only coroutine: fine on an asyncio worker, impossible on a trio one."""
    import asyncio

    await asyncio.sleep(0.01)
    record(label)


async def asyncio_future_only(label: str) -> None:
    """Awaits an asyncio future directly (what asyncio libraries do deep inside)."""
    import asyncio

    loop = asyncio.get_running_loop()
    future = loop.create_future()
    loop.call_soon(future.set_result, None)
    await future
    record(label)


# -- return values (tests/worker/test_results.py) ----------------------------------------------


def sync_returns(value: object = None) -> object:
    return value


async def async_returns(value: object = None) -> object:
    await anyio.lowlevel.checkpoint()
    return value


def sync_returns_set() -> object:
    return {1, 2}


async def async_returns_set() -> object:
    return {1, 2}


def sync_returns_nested_bad() -> object:
    return {"ok": [1, 2], "when": [0, datetime.now(UTC)]}


def sync_returns_text(size: int) -> str:
    return "x" * size


async def async_returns_text(size: int) -> str:
    return "x" * size


def sync_returns_tuple_and_number_keys() -> object:
    return {"pair": (1, "a"), 3: "three", "nul": "a\x00b"}


async def async_fail_with(label: str, **settings: object) -> None:
    """Fails; its kwargs hold settings (for tests/worker/test_worker_sentry.py)."""
    raise RuntimeError(f"boom with {len(settings)} settings")
