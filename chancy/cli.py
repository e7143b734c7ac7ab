"""`chancy`: the admin command line (migrations, queues, jobs, workers, workflows).

chancy --app myproject.worker:chancy misc migrate
chancy --app myproject.worker:chancy queue list
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import psycopg

from chancy._appref import AppRefError, load_app
from chancy._db import connect_error_reason
from chancy.admin import JobFilter, JobsResult
from chancy.app import Chancy
from chancy.dashboard._serve import add_arguments as add_dashboard_arguments
from chancy.dashboard._serve import hash_password_command
from chancy.dashboard._serve import serve as serve_dashboard
from chancy.embedded import DEFAULT_DATA_DIR, embedded_status, stop_embedded
from chancy.errors import ChancyError, DatabaseUnavailable
from chancy.job import Job, Limit, QueuedJob
from chancy.queue import Queue

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZES = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def _duration(text: str) -> timedelta:
    """`90`, `90s`, `15m`, `2h`, `1d` -> a timedelta."""
    raw = text.strip().lower()
    unit = raw[-1] if raw and raw[-1] in _UNITS else "s"
    number = raw[:-1] if raw and raw[-1] in _UNITS else raw
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 90s, 15m or 2h: {text!r}"
        ) from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected a duration > 0: {text!r}")
    return timedelta(seconds=seconds)


def _moment(text: str) -> datetime:
    """An ISO 8601 time (UTC if it names no zone), or a duration meaning "that long ago"."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return datetime.now(UTC) - _duration(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _future(text: str) -> datetime:
    """An ISO 8601 time (UTC if it names no zone), or a duration from now."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return datetime.now(UTC) + _duration(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _limits(text: str) -> list[Limit]:
    """`memory=512M,time=30s` -> [Limit(MEMORY, 536870912), Limit(TIME, 30)]."""
    limits = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, value = part.partition("=")
        kind, value = kind.strip().lower(), value.strip().lower()
        try:
            if kind == "memory":
                suffix = value[-1] if value and value[-1] in "kmg" else ""
                number = value[:-1] if suffix else value
                limits.append(Limit(Limit.Type.MEMORY, int(float(number) * _SIZES[suffix])))
            elif kind == "time":
                seconds = _duration(value).total_seconds()
                limits.append(
                    Limit(Limit.Type.TIME, int(seconds) if seconds.is_integer() else seconds)  # type: ignore[arg-type]
                )
            else:
                raise ValueError(f"unknown limit {kind!r}")
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise argparse.ArgumentTypeError(
                f"expected e.g. memory=512M,time=30s: {part!r} ({exc})"
            ) from None
    return limits


async def _migrate(app: Chancy, args: argparse.Namespace) -> int:
    await app.migrate(to_version=args.to_version)
    for component, (applied, latest) in (await app.schema_versions()).items():
        print(f"{component}: version {applied} of {latest}")
    return 0


async def _check_schema(app: Chancy, args: argparse.Namespace) -> int:
    ok = await app.is_up_to_date()
    print("schema is up to date" if ok else "schema needs migrating: chancy --app ... misc migrate")
    return 0 if ok else 1


async def _queue_list(app: Chancy, args: argparse.Namespace) -> int:
    queues = await app.get_all_queues()
    undeclared = await app.get_undeclared_queues()
    failing: dict[str, list[dict[str, Any]]] = {}
    for w in await app.get_all_workers():
        for name, status in (w.get("queue_status") or {}).items():
            if status.get("status") == "failed":
                failing.setdefault(name, []).append(
                    {
                        "worker_id": w["worker_id"],
                        "error": status.get("error", ""),
                        "failures": status.get("failures", 1),
                        "retry_in": status.get("retry_in"),
                    }
                )
    if args.json:
        _print_json(
            [{**q.pack(), "declared": True, "failing_on": failing.get(q.name, [])} for q in queues]
            + [{"name": n, "declared": False, "waiting_jobs": c} for n, c in undeclared.items()]
        )
        return 0
    for q in queues:
        rate = f" rate={q.rate_limit}/{q.rate_limit_window}s" if q.rate_limit else ""
        print(
            f"{q.name:<24} {q.state.value:<7} concurrency={q.concurrency} "
            f"executor={q.executor.rsplit('.', 1)[-1]} tags={','.join(sorted(q.tags))}{rate}"
        )
        for failure in failing.get(q.name, []):
            retry = failure["retry_in"]
            when = f", next try in {retry}s" if retry is not None else ""
            print(
                f"{'':<24} FAILING on worker {failure['worker_id']} "
                f"({failure['failures']} in a row{when}): {failure['error']}"
            )
    for name, count in undeclared.items():
        print(f"{name:<24} NOT DECLARED: {count} unfinished job(s) wait for this queue")
    return 0


async def _queue_declare(app: Chancy, args: argparse.Namespace) -> int:
    queue = Queue(
        name=args.name,
        concurrency=args.concurrency,
        tags=set(args.tag or [r".*"]),
        executor=args.executor,
        executor_options=json.loads(args.executor_options),
        polling_interval=args.polling_interval,
        rate_limit=args.rate_limit,
        rate_limit_window=args.rate_limit_window,
    )
    _print_json((await app.declare(queue, upsert=args.upsert)).pack())
    return 0


async def _queue_pause(app: Chancy, args: argparse.Namespace) -> int:
    if args.for_seconds is not None and args.resume_at is not None:
        raise ValueError("give --for or --resume-at, not both")
    if args.for_seconds is not None and not args.for_seconds > 0:
        raise ValueError("--for: expected seconds > 0")
    resume: datetime | timedelta | None = args.resume_at
    if args.for_seconds is not None:
        resume = timedelta(seconds=args.for_seconds)
    queue = await app.pause_queue(args.name, resume_at=resume)
    if args.json:
        _print_json(queue.pack())
        return 0
    until = f" until {queue.resume_at.isoformat(timespec='seconds')}" if queue.resume_at else ""
    print(f"paused {args.name}{until}")
    return 0


async def _queue_resume(app: Chancy, args: argparse.Namespace) -> int:
    queue = await app.resume_queue(args.name)
    if args.json:
        _print_json(queue.pack())
    else:
        print(f"resumed {args.name}")
    return 0


async def _queue_stats(app: Chancy, args: argparse.Namespace) -> int:
    stats = await app.queue_stats(args.name)
    if args.json:
        _print_json(
            [
                {
                    **dataclasses.asdict(s),
                    "state": s.state.value if s.state else None,
                    "workers": list(s.workers),
                }
                for s in stats
            ]
        )
        return 0
    for s in stats:
        age = f"{s.oldest_runnable_age:.0f}s" if s.oldest_runnable_age is not None else "-"
        print(
            f"{s.name:<24} {s.state.value if s.state else 'UNDECLARED':<10} pending={s.pending}"
            f" retrying={s.retrying} running={s.running} oldest={age}"
            f" 1m={s.succeeded_last_minute}/{s.failed_last_minute}"
            f" 1h={s.succeeded_last_hour}/{s.failed_last_hour} (ok/failed)"
            f" workers={','.join(s.workers) or '-'}"
        )
    return 0


async def _queue_delete(app: Chancy, args: argparse.Namespace) -> int:
    await app.delete_queue(args.name, purge_jobs=not args.keep_jobs)
    print(f"deleted {args.name}")
    return 0


async def _job_get(app: Chancy, args: argparse.Namespace) -> int:
    job = await app.get_job(args.id)
    if job is None:
        print(f"no job {args.id}", file=sys.stderr)
        return 1
    _print_json(job.pack())
    return 0


async def _job_cancel(app: Chancy, args: argparse.Namespace) -> int:
    await app.cancel_job(args.id)
    job = await app.get_job(args.id)
    print(f"{args.id}: {job.state.value if job else 'gone'}")
    return 0


async def _job_push(app: Chancy, args: argparse.Namespace) -> int:
    job = Job(
        func=args.func,
        queue=args.queue,
        kwargs=json.loads(args.kwargs),
        priority=args.priority,
        max_attempts=args.max_attempts,
        scheduled_at=args.scheduled_at or datetime.now(UTC),
        limits=args.limit or [],
        unique_key=args.unique_key,
    )
    ref = await app.push(job)
    if args.json:
        _print_json({"id": ref.identifier})
    else:
        print(ref)
    return 0


async def _job_list(app: Chancy, args: argparse.Namespace) -> int:
    jobs = await app.list_jobs(
        queue=args.queue,
        state=args.state,
        func=args.func,
        since=args.since,
        until=args.until,
        limit=args.limit,
        after=args.after,
        error=args.error,
    )
    if args.json:
        _print_json([job.pack() for job in jobs])
        return 0
    for job in jobs:
        print(f"{job.id} {job.queue:<16} {job.state.value:<9} attempts={job.attempts} {job.func}")
    return 0


def _target(args: argparse.Namespace) -> dict[str, Any]:
    filters = args.queue or args.state or args.func or args.since or args.until or args.error
    if args.ids:
        if filters or args.all:
            raise ValueError(
                "give job ids or --queue/--state/--func/--since/--until/--all, not both"
            )
        return {"refs": args.ids}
    if not filters and not args.all:
        raise ValueError(
            "name the jobs: give ids, or filters (--queue/--state/--func/--since), "
            "or --all for every job"
        )
    where = JobFilter(
        queue=args.queue,
        state=args.state,
        func=args.func,
        since=args.since,
        until=args.until,
        error=args.error,
    )
    return {"where": where, "all": args.all}


def _print_result(verb: str, result: JobsResult, args: argparse.Namespace, *, dry: bool) -> int:
    verb = f"would be {verb}" if dry else verb
    if args.json:
        _print_json({"dry_run": dry, "done": result.done, "skipped": result.skipped})
        return 0
    for id_ in result.done:
        print(f"{id_}: {verb}")
    for id_, reason in result.skipped.items():
        print(f"{id_}: skipped: {reason}")
    print(f"{len(result.done)} {verb}, {len(result.skipped)} skipped")
    return 0


async def _rehearse(
    app: Chancy, op: str, target: dict[str, Any], extra: dict[str, Any]
) -> JobsResult:
    """Run the operation in a transaction that is rolled back: exactly what it would do."""
    method = getattr(app, f"{op}_ex")
    async with (
        app.pool.connection() as conn,
        conn.transaction(force_rollback=True),
        conn.cursor() as cursor,
    ):
        return await method(cursor, **target, **extra)  # type: ignore[no-any-return]


async def _bulk(app: Chancy, args: argparse.Namespace, op: str, verb: str, **extra: Any) -> int:
    target = _target(args)
    if args.dry_run:
        return _print_result(verb, await _rehearse(app, op, target, extra), args, dry=True)
    if "where" in target and not args.yes:
        preview = await _rehearse(app, op, target, extra)
        if not preview.done:
            return _print_result(verb, preview, args, dry=True)
        question = f"{op.split('_')[0]} {len(preview.done)} job(s) matching the filter? [y/N] "
        if not sys.stdin.isatty():
            raise ValueError(
                f"{len(preview.done)} job(s) match: pass --yes to act on them "
                "(or --dry-run to list them)"
            )
        answer = await anyio.to_thread.run_sync(input, question)
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return 1
    return _print_result(verb, await getattr(app, op)(**target, **extra), args, dry=False)


async def _job_retry(app: Chancy, args: argparse.Namespace) -> int:
    return await _bulk(app, args, "retry_jobs", "retried")


async def _job_purge(app: Chancy, args: argparse.Namespace) -> int:
    return await _bulk(app, args, "purge_jobs", "purged", include_running=args.include_running)


async def _job_move(app: Chancy, args: argparse.Namespace) -> int:
    return await _bulk(app, args, "move_jobs", f"moved to {args.to}", queue=args.to)


async def _job_reprioritize(app: Chancy, args: argparse.Namespace) -> int:
    return await _bulk(
        app, args, "reprioritize_jobs", f"set to priority {args.priority}", priority=args.priority
    )


async def _worker_list(app: Chancy, args: argparse.Namespace) -> int:
    workers = await app.get_all_workers()
    if args.json:
        _print_json(workers)
        return 0
    now = datetime.now(UTC)
    print(f"{'WORKER':<28} {'HOST:PID':<28} {'SEEN':>6}  {'STATUS':<6} QUEUES")
    for w in workers:
        # A worker whose heartbeat expired is removed by the next live worker's heartbeat;
        # until then it is listed as dead.
        dead = w["expires_at"] < now
        failed = sorted(
            n for n, s in (w.get("queue_status") or {}).items() if s.get("status") == "failed"
        )
        queues = ",".join(w["queues"]) + "".join(f" !{n}(failed)" for n in failed)
        seen = f"{(now - w['last_seen']).total_seconds():.0f}s"
        host = f"{w['hostname']}:{w['pid']}"
        print(
            f"{w['worker_id']:<28} {host:<28} {seen:>6}  {'DEAD' if dead else 'alive':<6} {queues}"
        )
    return 0


def _workflow_summary(flow: Any) -> dict[str, Any]:
    return {
        "id": flow.id,
        "name": flow.name,
        "state": flow.state.value,
        "continue_on_failure": flow.continue_on_failure,
        "total_steps": flow.total_steps,
        "unfinished_steps": flow.unfinished_steps,
        "failed_steps": flow.failed_steps,
        "created_at": flow.created_at,
        "completed_at": flow.completed_at,
    }


async def _workflow_list(app: Chancy, args: argparse.Namespace) -> int:
    from chancy.plugins.workflow import list_workflows

    flows = await list_workflows(app, state=args.state, name=args.name, limit=args.limit)
    if args.json:
        _print_json([_workflow_summary(flow) for flow in flows])
        return 0
    for flow in flows:
        done = flow.total_steps - flow.unfinished_steps
        print(
            f"{flow.id} {flow.state.value:<9} {done}/{flow.total_steps} steps"
            f" failed={flow.failed_steps} {flow.name}"
        )
    return 0


async def _workflow_get(app: Chancy, args: argparse.Namespace) -> int:
    from chancy.plugins.workflow import WorkflowPlugin, get_workflow

    flow = await get_workflow(app, args.id)
    if flow is None:
        print(f"no workflow {args.id}", file=sys.stderr)
        return 1
    if args.dot:
        WorkflowPlugin.generate_dot(flow, sys.stdout)
        return 0
    steps = [
        {
            "name": name,
            "job_id": one.job_id,
            "func": one.job.func,
            "dependencies": one.dependencies,
            "status": one.status,
            "state": one.state.value if one.state else None,
            "result": one.result,
        }
        for name, one in flow
    ]
    if args.json:
        _print_json({**_workflow_summary(flow), "steps": steps})
        return 0
    print(f"{flow.id} {flow.state.value} {flow.name}")
    for one in steps:
        after = f" after {', '.join(one['dependencies'])}" if one["dependencies"] else ""
        print(f"  {one['name']:<20} {one['status']:<9} {one['job_id']} {one['func']}{after}")
    return 0


async def _workflow_retry(app: Chancy, args: argparse.Namespace) -> int:
    from chancy.plugins.workflow import retry_workflow

    again = await retry_workflow(app, args.id)
    print(f"{args.id}: {len(again)} failed step(s) run again")
    return 0


async def _workflow_cancel(app: Chancy, args: argparse.Namespace) -> int:
    from chancy.plugins.workflow import cancel_workflow

    acted = await cancel_workflow(app, args.id)
    print(f"{args.id}: {len(acted)} unfinished step(s) cancelled")
    return 0


def _embedded(args: argparse.Namespace) -> int:
    if args.action == "stop":
        was_running = stop_embedded(args.data_dir)
        status = embedded_status(args.data_dir)
        if args.json:
            _print_json({"stopped": was_running, **status.as_dict()})
        elif was_running:
            print(f"stopped the embedded server of {status.data_dir}")
        else:
            print(f"no embedded server is running for {status.data_dir}")
        return 0
    status = embedded_status(args.data_dir)
    if args.json:
        _print_json(status.as_dict())
    elif not status.initialised:
        print(f"{status.data_dir}: no embedded server set up here")
    elif status.running:
        print(
            f"{status.data_dir}: running (PostgreSQL {status.version}, pid {status.pid})\n"
            f"dsn: {status.dsn}"
        )
    else:
        print(f"{status.data_dir}: stopped (PostgreSQL {status.version})")
    return 0 if status.running else 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chancy",
        description="Administer a Chancy job queue: migrations, queues, jobs and workers.",
    )
    parser.add_argument(
        "--app",
        help="the app as module:attribute (a Chancy instance or a function returning one); "
        "default: $CHANCY_APP",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=10,
        metavar="SECONDS",
        help="give up reaching PostgreSQL after this many seconds (default: 10); errors that "
        "retrying cannot fix (authentication, unknown database or role) fail at once",
    )
    groups = parser.add_subparsers(
        dest="group", required=True, metavar="{misc,queue,job,worker,dashboard,workflow}"
    )

    def command(
        sub: Any, name: str, func: Callable[..., Any], help_: str
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=func)
        return p

    misc = groups.add_parser("misc", help="migrations and schema checks").add_subparsers(
        dest="command", required=True
    )
    embedded = misc.add_parser(
        "embedded",
        help="the embedded PostgreSQL server used when no DSN is set (status, stop)",
        description="The embedded PostgreSQL server (the 'embedded' extra) that Chancy starts "
        "when CHANCY_DSN is unset. It outlives the processes that use it; stop it here. "
        "Needs no --app.",
    ).add_subparsers(dest="action", required=True)
    for name, help_ in [
        ("status", "whether the data folder's server is running (exit 0) or not (exit 3)"),
        ("stop", "stop the server now (open sessions are disconnected; data is kept)"),
    ]:
        p = embedded.add_parser(name, help=help_, description=help_)
        p.set_defaults(local=_embedded)
        p.add_argument(
            "--data-dir",
            help=f"the data folder (default: $CHANCY_DATA_DIR, else ./{DEFAULT_DATA_DIR})",
        )
        p.add_argument("--json", action="store_true", help="print JSON")
    p = misc.add_parser(
        "hash-password",
        help="hash a password for the dashboard's --users-file (reads it from the terminal "
        "or one line of standard input); needs no --app",
    )
    p.set_defaults(local=hash_password_command)
    p = command(misc, "migrate", _migrate, "migrate the database (core and plugins) up or down")
    p.add_argument("--to-version", type=int, help="core schema version (default: latest)")
    command(misc, "check-schema", _check_schema, "exit 0 if the schema is up to date, else 1")

    queue = groups.add_parser("queue", help="list, declare, pause, resume, delete queues")
    qsub = queue.add_subparsers(dest="command", required=True)
    p = command(qsub, "list", _queue_list, "list every declared queue")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = command(qsub, "declare", _queue_declare, "declare a queue (--upsert to replace settings)")
    p.add_argument("name")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--tag", action="append", help="worker tag regex (repeatable)")
    p.add_argument("--executor", default=Chancy.Executor.Process.value)
    p.add_argument("--executor-options", default="{}", help="JSON object")
    p.add_argument("--polling-interval", type=float, default=1)
    p.add_argument("--rate-limit", type=int)
    p.add_argument("--rate-limit-window", type=int)
    p.add_argument("--upsert", action="store_true")
    p = command(qsub, "pause", _queue_pause, "pause a queue: workers stop claiming its jobs")
    p.add_argument("name")
    p.add_argument(
        "--for",
        dest="for_seconds",
        type=float,
        metavar="SECONDS",
        help="resume by itself after this many seconds (default: stay paused)",
    )
    p.add_argument(
        "--resume-at",
        type=_future,
        metavar="WHEN",
        help="resume by itself at this time: ISO 8601 (UTC unless it names a zone) or a "
        "duration from now such as 30m",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p = command(qsub, "resume", _queue_resume, "resume a paused queue")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = command(qsub, "stats", _queue_stats, "jobs waiting/running/finished per queue, workers")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = command(qsub, "delete", _queue_delete, "delete a queue and (unless --keep-jobs) its jobs")
    p.add_argument("name")
    p.add_argument("--keep-jobs", action="store_true")

    jobs = groups.add_parser("job", help="inspect, push and cancel jobs")
    jsub = jobs.add_subparsers(dest="command", required=True)
    command(jsub, "get", _job_get, "print a job as JSON").add_argument("id")
    command(jsub, "cancel", _job_cancel, "cancel a job (a running one is stopped)").add_argument(
        "id"
    )
    states = [s.value for s in QueuedJob.State]
    when = "ISO 8601 time (UTC unless it names a zone) or a duration ago such as 1h"

    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument("--queue", help="only jobs of this queue")
        p.add_argument("--state", choices=states, help="only jobs in this state")
        p.add_argument("--func", help="only jobs of this function (dotted path)")
        p.add_argument("--since", type=_moment, metavar="WHEN", help=f"pushed at or after: {when}")
        p.add_argument("--until", type=_moment, metavar="WHEN", help=f"pushed before: {when}")
        p.add_argument(
            "--error", metavar="TEXT", help="only jobs one of whose errors contains TEXT (any case)"
        )

    p = command(jsub, "list", _job_list, "list the newest jobs, newest first")
    filters(p)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--after", help="the last id of the previous page")
    p.add_argument("--json", action="store_true", help="print JSON")
    for name, func, help_ in [
        ("retry", _job_retry, "run finished jobs again now (attempts reset, errors kept)"),
        ("purge", _job_purge, "delete jobs (never a running one unless --include-running)"),
        ("move", _job_move, "move unfinished jobs to another queue"),
        ("reprioritize", _job_reprioritize, "change the priority of unfinished jobs"),
    ]:
        p = command(
            jsub,
            name,
            func,
            f"{help_}; by id, or every job matching filters (asks first unless --yes)",
        )
        p.add_argument("ids", nargs="*", metavar="id")
        filters(p)
        p.add_argument("--all", action="store_true", help="no filter: every job")
        p.add_argument(
            "--dry-run", action="store_true", help="change nothing: say what would be done"
        )
        p.add_argument("--yes", action="store_true", help="act on a filter without asking")
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "purge":
            p.add_argument("--include-running", action="store_true")
        if name == "move":
            p.add_argument("--to", required=True, metavar="QUEUE", help="the queue to move to")
        if name == "reprioritize":
            p.add_argument("--priority", type=int, required=True)
    p = command(jsub, "push", _job_push, "push a job by function path")
    p.add_argument("func", help="importable function, e.g. myproject.tasks.send_email")
    p.add_argument("--queue", default="default")
    p.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--max-attempts", type=int, default=1)
    p.add_argument(
        "--scheduled-at",
        type=_future,
        metavar="WHEN",
        help="run no earlier than: ISO 8601 (UTC unless it names a zone) or a duration from now",
    )
    p.add_argument("--unique-key", help="at most one unfinished job holds this key")
    p.add_argument(
        "--limit", type=_limits, metavar="LIMITS", help="resource limits, e.g. memory=512M,time=30s"
    )
    p.add_argument("--json", action="store_true", help="print JSON")

    workers = groups.add_parser("worker", help="inspect workers; web: the dashboard")
    wsub = workers.add_subparsers(dest="command", required=True)
    p = command(wsub, "list", _worker_list, "list the workers known to the cluster")
    p.add_argument("--json", action="store_true", help="print JSON")
    dashboard_help = (
        "serve the dashboard: a web UI and JSON API over queues, jobs, workers and schedules "
        "(the 'dashboard' extra; docs/dashboard.md)"
    )
    for sub, name in ((groups, "dashboard"), (wsub, "web")):
        p = sub.add_parser(name, help=dashboard_help, description=dashboard_help)
        p.set_defaults(serve=serve_dashboard)
        add_dashboard_arguments(p)

    flows = groups.add_parser(
        "workflow", help="list, inspect, retry and cancel workflows (the workflow plugin)"
    )
    fsub = flows.add_subparsers(dest="command", required=True)
    p = command(fsub, "list", _workflow_list, "the newest workflows first, with their progress")
    p.add_argument("--state", choices=["pending", "running", "completed", "failed"])
    p.add_argument("--name", help="only workflows of this name")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default: 100)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = command(fsub, "get", _workflow_get, "one workflow and the state of each of its steps")
    p.add_argument("id", help="the workflow's id")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--dot", action="store_true", help="print a Graphviz DOT graph")
    p = command(fsub, "retry", _workflow_retry, "run a workflow's failed steps again")
    p.add_argument("id", help="the workflow's id")
    p = command(fsub, "cancel", _workflow_cancel, "cancel every unfinished step of a workflow")
    p.add_argument("id", help="the workflow's id")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `chancy` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "local", None) is not None:  # needs no app and no database
        try:
            return int(args.local(args))
        except RuntimeError as exc:
            print(f"chancy: {exc}", file=sys.stderr)
            return 1
    try:
        app = load_app(args.app)
    except AppRefError as exc:
        print(f"chancy: {exc}", file=sys.stderr)
        return 2
    if not args.connect_timeout > 0:
        print("chancy: --connect-timeout: expected seconds > 0", file=sys.stderr)
        return 2
    # An admin command should not wait the worker's poll_reconnect_timeout (300 s by default).
    app.db.connect_timeout = args.connect_timeout
    if getattr(args, "serve", None) is not None:  # a server: runs its own event loop
        try:
            return int(args.serve(app, args))
        except (ChancyError, DatabaseUnavailable) as exc:
            print(f"chancy: {exc}", file=sys.stderr)
            return 1
    command: Callable[[Chancy, argparse.Namespace], Awaitable[int]] = args.handler

    async def run() -> int:
        async with app:
            return await command(app, args)

    try:
        return anyio.run(run)
    except (ChancyError, DatabaseUnavailable, ValueError) as exc:
        print(f"chancy: {exc}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as exc:  # e.g. the connection was lost mid-command
        print(f"chancy: database error: {connect_error_reason(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
