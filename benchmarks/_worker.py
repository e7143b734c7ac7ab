"""Running a Worker for a benchmark: in-process (a context manager) or as a separate process."""

from __future__ import annotations

import contextlib
import importlib.util
import time
from collections.abc import AsyncIterator

import anyio
import psycopg

from chancy import Chancy


def worker_available() -> str | None:
    """None when `chancy.worker.Worker` can be imported, else why not."""
    if importlib.util.find_spec("chancy.worker") is None:
        return "chancy/worker.py has not landed yet"
    try:
        from chancy.worker import Worker  # noqa: F401
    except Exception as exc:  # a half-landed module must not stop the other workloads
        return f"chancy.worker does not import: {exc!r}"
    return None


def executor_available(path: str) -> str | None:
    module, _, name = path.rpartition(".")
    if importlib.util.find_spec(module) is None:
        return f"{module} has not landed yet"
    try:
        getattr(importlib.import_module(module), name)
    except Exception as exc:
        return f"{path} does not import: {exc!r}"
    return None


@contextlib.asynccontextmanager
async def running_worker(app: Chancy, **options: object) -> AsyncIterator[object]:
    """A Worker of `app` running in this process (no signal handlers), stopped on exit."""
    from chancy.worker import Worker

    options.setdefault("register_signal_handlers", False)
    options.setdefault("shutdown_timeout", 10)
    async with Worker(app, **options) as worker:  # type: ignore[arg-type]
        yield worker


def unfinished(dsn: str, prefix: str) -> int:
    """How many jobs of `prefix` are not finished yet (served by the partial indexes)."""
    jobs = f'"{prefix}jobs"'
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT (SELECT count(*) FROM {jobs} WHERE state IN ('pending', 'retrying'))"
            f" + (SELECT count(*) FROM {jobs} WHERE state = 'running')"
        ).fetchone()
    return int(row[0])  # type: ignore[index]


async def wait_all_finished(dsn: str, prefix: str, timeout: float, interval: float = 0.01) -> float:
    """Poll the database until no job of `prefix` is left unfinished; perf_counter() then."""
    jobs = f'"{prefix}jobs"'
    query = (
        f"SELECT EXISTS (SELECT 1 FROM {jobs} WHERE state IN ('pending', 'retrying'))"
        f" OR EXISTS (SELECT 1 FROM {jobs} WHERE state = 'running')"
    )
    deadline = time.perf_counter() + timeout
    conn = await anyio.to_thread.run_sync(lambda: psycopg.connect(dsn, autocommit=True))
    try:
        while True:
            busy = await anyio.to_thread.run_sync(lambda: conn.execute(query).fetchone()[0])
            now = time.perf_counter()
            if not busy:
                return now
            if now > deadline:
                raise TimeoutError(f"jobs still unfinished after {timeout} s")
            await anyio.sleep(interval)
    finally:
        conn.close()


def state_counts(dsn: str, prefix: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(f'SELECT state, count(*) FROM "{prefix}jobs" GROUP BY state').fetchall()
    return {state: int(n) for state, n in rows}


def db_span(dsn: str, prefix: str) -> float:
    """Seconds from the first claim to the last completion, by the database's timestamps."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            f'SELECT extract(epoch FROM max(completed_at) - min(started_at)) FROM "{prefix}jobs"'
        ).fetchone()
    return float(row[0]) if row and row[0] is not None else float("nan")  # type: ignore[index]
