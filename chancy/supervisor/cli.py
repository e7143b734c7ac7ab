"""`chancy-supervisor`: run the worker's actors and child processes as a long-running service.

    chancy-supervisor --app myproject.worker:chancy
    chancy-supervisor --app myproject.worker:chancy --check      # health check, exit 0/1

SIGTERM or SIGINT stops it gracefully (stop claiming, let running jobs finish for up to
`--shutdown-timeout` seconds, then put the rest back to pending); a second signal stops it at
once. Children never outlive it: they exit when their pipe closes, and on Linux the kernel
kills them when the supervisor dies (PR_SET_PDEATHSIG), even after `kill -9`.

The status file (`--status-file`, else $CHANCY_STATUS_FILE, else
`<tempdir>/chancy-supervisor-<uid>.json`) is written atomically at start and every few seconds
and removed on a clean exit; `--check` reads it (see docs/deploy.md for the contract).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only the standard library at import time: `--check=live` must stay fast (and never import
# the user's app); everything else is imported where it is used.
if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

#: Seconds between two writes of the status file.
STATUS_INTERVAL = 5.0


def default_status_file() -> Path:
    path = os.environ.get("CHANCY_STATUS_FILE")
    if path:
        return Path(path)
    import tempfile

    return Path(tempfile.gettempdir()) / f"chancy-supervisor-{os.getuid()}.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chancy-supervisor",
        description="Run Chancy's worker (heartbeat, queue watcher, fetchers, batcher, listener, "
        "plugins) and its supervised child processes until SIGTERM/SIGINT.",
    )
    parser.add_argument(
        "--app",
        help="module:attribute naming a Chancy instance or a function returning one "
        "(default: $CHANCY_APP)",
    )
    parser.add_argument("--worker-id", help="this worker's id (default: a random UUID)")
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        help="an extra worker tag, e.g. has=gpu (repeatable); queues pick workers by tag",
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error")
    parser.add_argument(
        "--migrate", action="store_true", help="migrate the database before starting"
    )
    parser.add_argument(
        "--shutdown-timeout", type=float, default=30, help="seconds running jobs get on SIGTERM"
    )
    parser.add_argument("--heartbeat-poll-interval", type=float, default=30)
    parser.add_argument("--heartbeat-timeout", type=float, default=90)
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="MODULE_PREFIX",
        help="allow only job functions under this module prefix (repeatable). A job row names "
        "its function by a dotted path, so whoever can write the jobs table can otherwise run "
        "any importable function (os.system ...). Refused jobs fail without being imported.",
    )
    parser.add_argument(
        "--allow-registered",
        action="store_true",
        help="allow functions decorated with @job in modules the app imports",
    )
    parser.add_argument(
        "--backend", choices=["asyncio", "trio"], default="asyncio", help="the event loop"
    )
    parser.add_argument(
        "--pass-env",
        action="append",
        default=[],
        metavar="NAME",
        help="pass this environment variable through to process-executor children (repeatable; "
        "e.g. DJANGO_SETTINGS_MODULE). Children otherwise get a scrubbed environment: what you "
        "pass is readable by every job.",
    )
    parser.add_argument("--status-file", type=Path, help="where the health status is written")
    parser.add_argument(
        "--status-interval", type=float, default=STATUS_INTERVAL, help="seconds between writes"
    )
    parser.add_argument(
        "--check",
        nargs="?",
        const="ready",
        choices=["ready", "live"],
        default=None,
        help="health check, exit 0 or print why not and exit 1. --check (readiness): the "
        "supervisor on this host is alive, its children up, the database reachable and its "
        "heartbeat fresh. --check=live (liveness): its status file is fresh and its process "
        "alive; no database, and the app is not imported",
    )
    parser.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve /healthz, /readyz and /metrics on this address (off by default; e.g. "
        "127.0.0.1:9464). Off loopback, /metrics and detailed health need a bearer token",
    )
    parser.add_argument(
        "--http-token-file",
        type=Path,
        metavar="FILE",
        help="file holding the bearer token for --http off loopback (default: $CHANCY_HTTP_TOKEN)",
    )
    parser.add_argument(
        "--log-format",
        choices=["plain", "json"],
        default="plain",
        help="plain: a timestamped line per record; json: one JSON object per line",
    )
    return parser


# -- running -----------------------------------------------------------------------------------


def _children(worker: Worker) -> list[int]:
    pids: list[int] = []
    for executor in worker.executors.values():
        pool = getattr(executor, "pool", None)
        if pool is not None:
            pids.extend(pool.pids)
    return pids


def write_status(path: Path, worker: Worker, interval: float = STATUS_INTERVAL) -> None:
    """Write the status file atomically (write, then rename)."""
    import psutil

    me = psutil.Process()
    status = {
        "pid": me.pid,
        "create_time": me.create_time(),
        "worker_id": worker.worker_id,
        "incarnation": worker.incarnation,
        "prefix": worker.chancy.prefix,
        "children": _children(worker),
        "updated_at": time.time(),
        "interval": interval,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{me.pid}.tmp")
    tmp.write_text(json.dumps(status))
    os.replace(tmp, path)


async def _status_writer(path: Path, worker: Worker, interval: float) -> None:
    import anyio

    while True:
        try:
            write_status(path, worker, interval)
        except Exception as exc:  # the status file must never take the supervisor down
            worker.log.warning("cannot write the status file %s: %s", path, exc)
        await anyio.sleep(interval)


def http_token(args: argparse.Namespace) -> str | None:
    """The bearer token for --http: --http-token-file, else $CHANCY_HTTP_TOKEN, else None."""
    if args.http_token_file is not None:
        token: str = args.http_token_file.read_text().strip()
        if not token:
            raise ValueError(f"--http-token-file {args.http_token_file} is empty")
        return token
    return os.environ.get("CHANCY_HTTP_TOKEN", "").strip() or None


async def serve(app: Chancy, args: argparse.Namespace) -> int:
    import anyio

    from chancy.allowlist import AllowList
    from chancy.worker import Worker

    allow = (
        AllowList(args.allow, registered=args.allow_registered)
        if args.allow or args.allow_registered
        else None
    )
    status_file: Path = args.status_file or default_status_file()
    # Built before the pools open, so that every connection is named after the worker.
    worker = Worker(
        app,
        worker_id=args.worker_id,
        tags=set(args.tag),
        shutdown_timeout=args.shutdown_timeout,
        heartbeat_poll_interval=args.heartbeat_poll_interval,
        heartbeat_timeout=args.heartbeat_timeout,
        register_signal_handlers=True,
        allowed_functions=allow,
        http=args.http,
        http_token=args.http_token_value,
    )
    async with app:
        if args.migrate:
            await app.migrate()
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                app.log.info(
                    "chancy-supervisor %s running (pid %d, status file %s)",
                    worker.worker_id,
                    os.getpid(),
                    status_file,
                )
                tg.start_soon(_status_writer, status_file, worker, args.status_interval)
                await worker.wait_for_shutdown()
                tg.cancel_scope.cancel()
        finally:
            with contextlib.suppress(OSError):
                status_file.unlink(missing_ok=True)  # noqa: ASYNC240 - one unlink at exit
    app.log.info("chancy-supervisor %s stopped", worker.worker_id)
    return 0


# -- the health check --------------------------------------------------------------------------


def _read_status(path: Path) -> tuple[dict[str, Any] | None, str]:
    try:
        return json.loads(path.read_text()), ""
    except FileNotFoundError:
        return None, f"no status file at {path}: is chancy-supervisor running?"
    except (OSError, ValueError) as exc:
        return None, f"unreadable status file {path}: {exc}"


def _proc_start_time(pid: int) -> float | None:
    """psutil's create_time from /proc (Linux), without importing psutil (--check=live runs
    often and should stay fast); None where /proc cannot say."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        ticks = int(stat.rpartition(b")")[2].split()[19])  # field 22: starttime
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _start_time(pid: int) -> float | None:
    """The process's start time (seconds since the epoch, as psutil's create_time)."""
    started = _proc_start_time(pid)
    if started is not None:
        return started
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def check_live(path: Path) -> tuple[bool, str]:
    """Liveness: the status file is fresh and its supervisor process alive (no database)."""
    status, why = _read_status(path)
    if status is None:
        return False, why
    pid = status.get("pid")
    if not isinstance(pid, int):
        return False, f"status file {path} names no pid"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, f"the supervisor (pid {pid}) is not running"
    except PermissionError:
        pass  # alive, another user's
    started = _start_time(pid)
    if started is None or abs(started - float(status.get("create_time", 0))) >= 1:
        return False, f"the supervisor (pid {pid}) is not running (the pid was reused)"
    interval = float(status.get("interval") or STATUS_INTERVAL)
    max_age = max(3 * interval, interval + 10)
    age = time.time() - float(status.get("updated_at", 0))
    if age > max_age:
        return False, (
            f"the status file {path} was last written {age:.0f} s ago (more than "
            f"{max_age:.0f} s): the supervisor's event loop is stuck"
        )
    return True, f"ok: supervisor pid {pid} alive, status written {age:.1f} s ago"


def check(app: Chancy, path: Path) -> tuple[bool, str]:
    """Whether the supervisor described by the status file at `path` is healthy, and why not."""
    import psutil
    import psycopg

    from chancy._db import connect_error_reason

    try:
        status: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return False, f"no status file at {path}: is chancy-supervisor running?"
    except (OSError, ValueError) as exc:
        return False, f"unreadable status file {path}: {exc}"
    try:
        proc = psutil.Process(status["pid"])
        alive = proc.is_running() and abs(proc.create_time() - status["create_time"]) < 1
    except (psutil.Error, KeyError):
        alive = False
    if not alive:
        return False, f"the supervisor (pid {status.get('pid')}) is not running"
    for pid in status.get("children", []):
        if not psutil.pid_exists(pid):
            return False, f"child process {pid} is gone"
    try:
        with psycopg.connect(app.dsn, connect_timeout=5, autocommit=True) as conn:
            conn.execute("SET statement_timeout = 5000")
            row = conn.execute(
                app.tables.q(
                    "SELECT expires_at > now() FROM {workers}"
                    " WHERE worker_id = %s AND incarnation = %s"
                ),
                (status["worker_id"], status["incarnation"]),
            ).fetchone()
    except psycopg.Error as exc:
        return False, f"database unreachable: {connect_error_reason(exc)}"
    if row is None:
        return False, f"worker {status['worker_id']} has no heartbeat row"
    if not row[0]:
        return False, f"worker {status['worker_id']}'s heartbeat expired"
    children = len(status.get("children", []))
    return True, f"ok: worker {status['worker_id']} (pid {status['pid']}, {children} children)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `chancy-supervisor` console script."""
    args = build_parser().parse_args(argv)
    if args.check == "live":
        ok, message = check_live(args.status_file or default_status_file())
        print(message, file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    import logging

    import anyio

    from chancy._appref import AppRefError, load_app
    from chancy._logging import configure

    try:
        app = load_app(args.app)
    except AppRefError as exc:
        print(f"chancy-supervisor: {exc}", file=sys.stderr)
        return 2
    level = getattr(logging, str(args.log_level).upper(), None)
    if not isinstance(level, int):
        print(f"chancy-supervisor: unknown --log-level {args.log_level!r}", file=sys.stderr)
        return 2
    configure(args.log_format, level, app.log)
    if args.check:
        ok, message = check(app, args.status_file or default_status_file())
        print(message, file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    args.http_token_value = None
    if args.http:  # checked before connecting to anything
        from chancy._http import parse_address

        try:
            parse_address(args.http)
            args.http_token_value = http_token(args)
        except (OSError, ValueError) as exc:
            print(f"chancy-supervisor: --http: {exc}", file=sys.stderr)
            return 2
    if args.pass_env:
        host = [n for n in os.environ.get("CHANCY_PASS_ENV", "").split(",") if n]
        os.environ["CHANCY_PASS_ENV"] = ",".join([*host, *args.pass_env])
    try:
        return anyio.run(serve, app, args, backend=args.backend)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        reason = _user_error(exc)
        if reason is None:
            raise
        print(f"chancy-supervisor: {reason}", file=sys.stderr)
        return 1


def _user_error(exc: BaseException) -> BaseException | None:
    """The error worth one line to the user (also from inside task groups), else None."""
    from chancy.errors import DatabaseUnavailable, MigrationRequired

    if isinstance(exc, MigrationRequired | DatabaseUnavailable | ValueError | OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _user_error(inner)) is not None:
                return found
    return None


if __name__ == "__main__":
    sys.exit(main())
