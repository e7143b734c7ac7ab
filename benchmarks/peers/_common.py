"""What every driver shares. Runs in each peer's own virtualenv: the standard library and psycopg
only (every peer installs psycopg; nothing of the project is imported here).

A driver is `python <peer>_driver.py COMMAND --dsn URL [options]` and prints one JSON line:

* `caps`: which drain flavours it has ({"async": null, "threaded": "why not", ...}).
* `enqueue`: jobs/s of the library's batch API (`--jobs` in one call) and of one push at a time
  (`--one` jobs); its schema installed first, outside the timing.
* `push`: installs the schema and pushes `--jobs` no-op jobs for a later `drain` (not timed).
* `drain`: starts a worker in this process (`--flavour`, `--concurrency`) and times, from
  starting it, until the database shows no unfinished job; jobs/s. The orchestrator samples this
  process's RSS (and its children's) meanwhile.
* `latency`: starts `worker` in a child process, pushes jobs one at a time at `--rate` for
  `--seconds`; p50/p99 push→start (the job body's clock) and push→done (when a 5 ms poll of the
  database first sees the job finished, by the library's own finished state).
* `worker`: a worker running `arecord` jobs until killed (for `latency`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import psycopg

HERE = Path(__file__).resolve().parent
FLAVOURS = ("async", "threaded", "process")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["caps", "enqueue", "push", "drain", "latency", "worker"])
    p.add_argument("--dsn", default="")
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--one", type=int, default=2_000)
    p.add_argument("--flavour", choices=FLAVOURS, default="async")
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--variant", default="", help="pgqueuer: psycopg or asyncpg")
    p.add_argument("--cap", type=float, default=60.0, help="drain: stop timing after this")
    return p.parse_args(argv)


def emit(figures: dict[str, Any]) -> None:
    print(json.dumps(figures), flush=True)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def scalar(dsn: str, query: str, params: Any = None) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def wait_until_idle(dsn: str, busy: str, timeout: float, interval: float = 0.01) -> float:
    """Poll `busy` (a query returning true while jobs are unfinished) until it is false;
    time.perf_counter() then. The same poll (10 ms, one connection) for every peer."""
    deadline = time.perf_counter() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute(busy).fetchone()
            now = time.perf_counter()
            if row is not None and not row[0]:
                return now
            if now > deadline:
                raise TimeoutError(f"jobs still unfinished after {timeout} s")
            time.sleep(interval)


async def timed_drain(
    args: argparse.Namespace,
    start_worker: Callable[[], Awaitable[Any]],
    busy: str,
    finished: str,
) -> NoReturn:
    """Start the worker (a coroutine that runs it until cancelled), wait until the database shows
    no unfinished job, print the figures and leave the process (see `finish`).

    A drain taking longer than `--cap` seconds is cut there: its rate is the jobs finished by then
    (`finished`, a count query) over the elapsed time, marked `capped`."""
    n = args.jobs
    t0 = time.perf_counter()
    running = asyncio.ensure_future(start_worker())
    poll = asyncio.ensure_future(asyncio.to_thread(wait_until_idle, args.dsn, busy, args.cap))
    done, _ = await asyncio.wait({running, poll}, return_when=asyncio.FIRST_COMPLETED)
    if poll not in done:  # the worker returned (or failed) first: wait for the poll anyway
        exc = running.exception()
        if exc is not None:
            log(f"the worker failed: {exc!r}")
        await asyncio.wait({poll})
    if poll.exception() is None:
        t1 = poll.result()
        finish({"jobs_per_s": n / (t1 - t0), "seconds": t1 - t0, "jobs": n})
    count = int(scalar(args.dsn, finished))
    t1 = time.perf_counter()
    finish({"jobs_per_s": count / (t1 - t0), "seconds": t1 - t0, "jobs": count, "capped": args.cap})


def finish(figures: dict[str, Any]) -> NoReturn:
    """Print the figures and leave at once: stopping a worker is not what is measured, and a
    hard exit ends every library's worker the same way."""
    emit(figures)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def driver_env(starts: str = "") -> dict[str, str]:
    env = os.environ.copy()
    env["PYTHONPATH"] = str(HERE)
    if starts:
        env["PEER_BENCH_STARTS"] = starts
    return env


@contextlib.contextmanager
def worker_child(script: str, args: argparse.Namespace, starts: str) -> Any:
    cmd = [sys.executable, script, "worker", "--dsn", args.dsn]
    cmd += ["--concurrency", str(args.concurrency), "--variant", args.variant]
    proc = subprocess.Popen(cmd, env=driver_env(starts))
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_starts(path: str) -> dict[int, float]:
    out: dict[int, float] = {}
    with open(path) as f:
        for line in f:
            i, t = line.split()
            out.setdefault(int(i), float(t))
    return out


class DoneWatcher(threading.Thread):
    """Polls the database every 5 ms for which of the pushed jobs have finished (`visible`, a
    query mapping `%s`, a list of ids, to the finished ones) and notes when each was first seen
    on this host's clock: push→done as a client of the database sees it, the same for all."""

    def __init__(self, dsn: str, visible: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.visible = dsn, visible
        self.pending: dict[str, Any] = {}
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def add(self, ident: Any) -> None:
        with self.lock:
            self.pending[str(ident)] = ident

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stopping.is_set():
                with self.lock:
                    ids = list(self.pending.values())
                if ids:
                    rows = conn.execute(self.visible, (ids,)).fetchall()
                    now = time.time()
                    with self.lock:
                        for (ident,) in rows:
                            if self.pending.pop(str(ident), None) is not None:
                                self.seen[str(ident)] = now
                time.sleep(0.005)

    def wait_all(self, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while self.pending and time.perf_counter() < deadline:
            time.sleep(0.01)
        self.stopping.set()
        self.join(5)


async def latency(
    script: str,
    args: argparse.Namespace,
    push: Callable[[int], Awaitable[Any]],
    visible: str,
    busy: str,
) -> dict[str, Any]:
    """Pace pushes of `arecord(i)` at `args.rate`; a worker (`script worker`) runs them.

    `push(i)` returns the job's id; push→start comes from the job body's clock (`peerjobs`),
    push→done from `DoneWatcher` polling `visible`."""
    with tempfile.NamedTemporaryFile("w", prefix="peer-starts-", delete=False) as f:
        starts_file = f.name
    watcher = DoneWatcher(args.dsn, visible)
    try:
        with worker_child(script, args, starts_file):
            await push(-1)  # the worker is up once this one has started
            deadline = time.perf_counter() + 60
            while -1 not in read_starts(starts_file):
                if time.perf_counter() > deadline:
                    raise TimeoutError("the worker did not start a first job in 60 s")
                await asyncio.sleep(0.02)
            await asyncio.to_thread(wait_until_idle, args.dsn, busy, 30)
            watcher.start()
            count = int(args.rate * args.seconds)
            pushed: list[tuple[int, Any, float]] = []
            t0 = time.perf_counter()
            for i in range(count):
                delay = t0 + i / args.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                at = time.time()
                ident = await push(i)
                watcher.add(ident)
                pushed.append((i, ident, at))
            await asyncio.to_thread(wait_until_idle, args.dsn, busy, 60)
            await asyncio.to_thread(watcher.wait_all, 10)
        starts = read_starts(starts_file)
    finally:
        watcher.stopping.set()
        os.unlink(starts_file)
    done = watcher.seen
    to_start = [(starts[i] - at) * 1000 for i, _, at in pushed if i in starts]
    to_done = [(done[str(ident)] - at) * 1000 for _, ident, at in pushed if str(ident) in done]
    return {
        "jobs": len(pushed),
        "started": len(to_start),
        "done": len(to_done),
        "start_p50_ms": percentile(to_start, 50),
        "start_p99_ms": percentile(to_start, 99),
        "done_p50_ms": percentile(to_done, 50),
        "done_p99_ms": percentile(to_done, 99),
    }


def run(
    args: argparse.Namespace,
    caps: dict[str, str | None],
    commands: dict[str, Callable[[argparse.Namespace], Awaitable[dict[str, Any] | None]]],
) -> None:
    if args.command == "caps":
        emit(caps)
        return
    if args.command == "drain" and caps.get(args.flavour):
        emit({"unsupported": caps[args.flavour]})
        return

    async def main() -> None:
        figures = await commands[args.command](args)
        if figures is not None:
            finish(figures)  # in the loop: no library's shutdown runs after the figures

    asyncio.run(main())
