"""The child worker bootloader: ``python -m chancy.supervisor.child --fd N --parent PID``.

A fresh interpreter started by the supervisor (never a ``fork`` of it), or a fork of the
pool's fork server (:mod:`chancy.supervisor._forkserver`), a clean single-threaded template
that has imported this module and nothing of the user's. Before any job code
is imported it hardens itself:

* ``RLIMIT_CORE`` = 0 (soft and hard): a crashing job dumps no core.
* Linux: ``PR_SET_PDEATHSIG(SIGKILL)`` so the kernel kills it when the supervisor thread
  that spawned it dies; if the parent is already gone (the race before ``prctl``), exit.
  It also becomes a child *subreaper*, so processes a job double-forks stay its
  descendants and are counted (and killed) with it.
* ``faulthandler`` is on, so a segfaulting job leaves a traceback in the log.
* Exits as soon as its channel reaches end-of-file, even in the middle of a job.
* fd 1 is pointed at fd 2, so ``print()`` in a job goes to the supervisor's log and can
  never corrupt the protocol channel, which lives on its own descriptor ``--fd``.

Then it answers :class:`~chancy.wire.Hello` (protocol version, ``sys.path``, initializer)
with :class:`~chancy.wire.Ready` and serves :class:`~chancy.wire.RunJob` frames one at a
time, each answered with a :class:`~chancy.wire.JobDone` that carries the job's meta and its
return value as JSON (encoded here, checked against the queue's ``max_result_size``: a value
that is not JSON or is too large fails the job). A reader thread watches the channel while a
job runs: a :class:`~chancy.wire.StopJob` is delivered to the job as an exception
(:class:`~chancy.supervisor.errors.TimeLimitExceeded` or
:class:`~chancy.supervisor.errors.JobCancelled`) raised in the main thread from a
``SIGUSR1`` handler; the supervisor kills the child if the job does not stop in time.

Time limits are also backed by the kernel, see :func:`arm_cpu_limit`.
"""

from __future__ import annotations

import faulthandler
import importlib
import inspect
import json
import math
import os
import queue
import resource
import signal
import sys
import threading
import traceback
import types
from typing import TYPE_CHECKING, Any

from chancy._result import ResultError, encode_result
from chancy.supervisor.errors import JobCancelled, JobStopped, TimeLimitExceeded
from chancy.wire import (
    PROTOCOL_VERSION,
    BlockingFrames,
    ErrorInfo,
    Fatal,
    Hello,
    JobDone,
    ProtocolError,
    Ready,
    RunJob,
    Shutdown,
    Started,
    StopJob,
)

if TYPE_CHECKING:
    from collections.abc import Callable

#: Exit codes of the child when it gives up on its own.
EXIT_PARENT_GONE = 70
EXIT_PROTOCOL_ERROR = 71
EXIT_FATAL = 72

#: Extra CPU seconds on top of the time limit before the kernel steps in.
CPU_GRACE_SECONDS = 5

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_STOP_SIGNAL = signal.SIGUSR1


def harden(parent_pid: int, *, private_shm: bool = False) -> None:
    """Apply the process hygiene described in the module docstring."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    faulthandler.enable()  # a crash leaves its Python traceback in the supervisor's log
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        if private_shm:
            _private_shm(libc)
    if os.getppid() != parent_pid:
        os._exit(EXIT_PARENT_GONE)
    os.dup2(2, 1)


_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x4000, 0x40000


def _private_shm(libc: Any) -> bool:
    """Give this child (and all it starts) a ``/dev/shm`` of its own: a fresh tmpfs in a
    mount namespace of its own. What a job leaves there is freed with the namespace, that is,
    once the child and everything it started are gone. Needs CAP_SYS_ADMIN (root); without
    it (or without a /dev/shm) the host's is used, as before. True if it took effect."""
    if not os.path.isdir("/dev/shm") or libc.unshare(_CLONE_NEWNS) != 0:
        return False
    # Stop mounts from propagating back to the host's namespace, then mount over /dev/shm.
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        return False
    flags = _MS_NOSUID | _MS_NODEV
    return bool(libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", flags, b"mode=1777") == 0)


def arm_cpu_limit(time_limit: float) -> tuple[int, int]:
    """Set a hard kernel CPU-time limit backing a job's wall-clock ``TIME`` limit.

    The supervisor enforces the wall clock; this is the backstop for when it cannot (it
    stalled or died). ``RLIMIT_CPU`` counts CPU seconds of all the process's threads since
    it started, and a hard limit can never be raised again, so:

    * the limit is ``cpu used so far + time_limit * usable CPUs + grace``: CPU time grows at
      most ``usable CPUs`` times faster than the wall clock, so the backstop never fires
      before the wall-clock limit would;
    * the soft limit sends ``SIGXCPU`` (fatal unless handled), the hard limit one second
      later is ``SIGKILL``, which nothing can catch;
    * because the hard limit cannot be lifted, the supervisor retires a child after any job
      that had a time limit; no later job ever runs under it.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    soft = math.ceil(usage.ru_utime + usage.ru_stime + time_limit * cpus + CPU_GRACE_SECONDS)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
    return soft, soft + 1


def import_function(path: str) -> Callable[..., Any]:
    """Import ``pkg.mod.func`` or ``pkg.mod:func`` (``chancy.job.import_function`` if present).

    The common case (the module before the last dot imports and has the attribute) is done
    here, so that a child does not import :mod:`chancy.job` just to run a job; anything
    else (a nested attribute path, a failure and its error) is left to
    ``chancy.job.import_function``, which gives the same result for the common case.
    """
    text = path if isinstance(path, str) else ""  # chancy.job rejects a non-string clearly
    module_name, sep, attr = text.partition(":") if ":" in text else text.rpartition(".")
    if sep and module_name and attr and "." not in attr:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not (exc.name and module_name.startswith(exc.name)):
                from chancy.job import JobImportError  # its message for a failed import

                raise JobImportError(
                    f"importing {module_name!r} for {path!r} failed: {exc}"
                ) from exc
        else:
            obj = getattr(module, attr, None)
            if obj is not None and callable(obj):
                return obj  # type: ignore[no-any-return]  # callable() narrowed it
    try:
        from chancy.job import import_function
    except ImportError:
        pass
    else:
        return import_function(path)
    if not module_name or not attr:
        raise ValueError(f"not an importable function path: {path!r}")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{path!r} is not callable")
    return obj  # type: ignore[no-any-return]  # callable() narrowed it


def error_info(exc: BaseException) -> ErrorInfo:
    """An exception as data."""
    return ErrorInfo(
        type=type(exc).__qualname__,
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
    )


def _job_parameter(func: Callable[..., Any]) -> str | None:
    """The keyword-only parameter annotated ``QueuedJob``, if the function has one."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    for param in params:
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        ann = param.annotation
        name = ann if isinstance(ann, str) else getattr(ann, "__name__", "")
        if name.rpartition(".")[2] == "QueuedJob":
            return param.name
    return None


#: Resolved job functions by path: (function, its ``QueuedJob`` parameter).
_resolved: dict[str, tuple[Callable[..., Any], str | None]] = {}


def _resolve(path: str) -> tuple[Callable[..., Any], str | None]:
    """Import and inspect a job function once per child (modules stay imported anyway)."""
    found = _resolved.get(path)
    if found is None:
        func = import_function(path)
        found = _resolved[path] = (func, _job_parameter(func))
    return found


def _run_async(coroutine: Any) -> Any:
    import asyncio  # only children that run async jobs pay for importing it

    return asyncio.run(coroutine)


class _State:
    """What the main thread runs and what the reader thread was asked to stop."""

    def __init__(self) -> None:
        self.accepted: str | None = None  # received, not finished (may not have started)
        self.running: str | None = None  # the job's code may be executing now
        self.stop: StopJob | None = None
        self.lock = threading.RLock()  # re-entered by the stop handler in the main thread


_state = _State()


def _stop_exception(request: StopJob) -> JobStopped:
    if request.kind == "time_limit":
        return TimeLimitExceeded(request.reason)
    return JobCancelled(request.reason)


def _on_stop_signal(signum: int, frame: object) -> None:
    with _state.lock:
        request, _state.stop = _state.stop, None
        running = _state.running
    if request is None or running != request.job_id:
        return
    raise _stop_exception(request)


def _start(job_id: str) -> None:
    """Mark *job_id* running; raise at once if a stop for it arrived before it started."""
    with _state.lock:
        _state.running = job_id
        early, _state.stop = _state.stop, None
    if early is not None and early.job_id == job_id:
        raise _stop_exception(early)


def run_job(message: RunJob) -> JobDone:
    """Run one job in this process and describe how it ended."""
    data = json.loads(message.job)
    meta: Any = data.get("meta") or {}
    job_obj: Any = None
    error: ErrorInfo | None = None
    result: Any = None
    encoded: bytes | None = None
    try:
        try:
            if message.time_limit is not None:
                arm_cpu_limit(message.time_limit)
            try:
                _start(message.job_id)  # from here on a stop interrupts, even the import
                func, param = _resolve(data["func"])
                kwargs = dict(data.get("kwargs") or {})
                if param is not None:
                    from chancy.job import QueuedJob

                    job_obj = QueuedJob.unpack(data)
                    kwargs[param] = job_obj
                result = func(**kwargs)  # an async function returns its coroutine here
                if isinstance(result, types.CoroutineType):
                    result = _run_async(result)
            finally:
                with _state.lock:
                    _state.running = None
                    _state.accepted = None
                    _state.stop = None
        except BaseException as exc:
            error = error_info(exc)
    except JobStopped as exc:  # a stop that landed just after the job's own handler
        error = error_info(exc)
    if job_obj is not None:
        meta = getattr(job_obj, "meta", meta)
    try:
        meta_bytes = json.dumps(meta, default=repr).encode()
    except (TypeError, ValueError):
        meta_bytes = json.dumps(data.get("meta") or {}, default=repr).encode()
    if error is None and result is not None:
        try:  # JSON, within the cap, or the job fails
            encoded = encode_result(result, message.max_result_size)
        except ResultError as exc:
            error = ErrorInfo(type="ResultError", message=str(exc), traceback=f"ResultError: {exc}")
        except Exception as exc:  # e.g. nested deeper than msgspec encodes
            error = error_info(exc)
    return JobDone(
        job_id=message.job_id, ok=error is None, meta=meta_bytes, error=error, result=encoded
    )


def _reader(frames: BlockingFrames, inbox: queue.SimpleQueue[RunJob | Shutdown]) -> None:
    """Watch the channel: queue work for the main thread, deliver stops, exit on EOF."""
    main_ident = threading.main_thread().ident
    assert main_ident is not None
    while True:
        try:
            message = frames.receive()
        except ProtocolError as exc:
            print(f"chancy child {os.getpid()}: protocol error: {exc}", file=sys.stderr)
            os._exit(EXIT_PROTOCOL_ERROR)
        except OSError:
            os._exit(EXIT_PARENT_GONE)
        if message is None:
            os._exit(EXIT_PARENT_GONE)  # the supervisor closed the channel or died
        if isinstance(message, StopJob):
            with _state.lock:
                if message.job_id != _state.accepted:
                    continue  # finished already
                _state.stop = message
                deliver = _state.running == message.job_id
            if deliver:  # else the main thread raises it as the job starts
                signal.pthread_kill(main_ident, _STOP_SIGNAL)
        elif isinstance(message, RunJob):
            with _state.lock:
                _state.accepted = message.job_id
            inbox.put(message)
        elif isinstance(message, Shutdown):
            inbox.put(message)
        else:
            print(f"chancy child {os.getpid()}: unexpected {message!r}", file=sys.stderr)
            os._exit(EXIT_PROTOCOL_ERROR)


def serve(
    fd: int, parent_pid: int, *, supervisor_pid: int | None = None, private_shm: bool = False
) -> int:
    """Handshake, then run jobs until told to shut down. Returns the exit code.

    *parent_pid* is this process's parent: the supervisor, or the fork server that forked it
    (:mod:`chancy.supervisor._forkserver`), in which case *supervisor_pid* is the
    supervisor's, which the handshake must come from.
    """
    harden(parent_pid, private_shm=private_shm)
    if supervisor_pid is None:
        supervisor_pid = parent_pid
    frames = BlockingFrames(fd)
    try:
        hello = frames.receive()
    except (ProtocolError, OSError):
        return EXIT_PROTOCOL_ERROR
    if hello is None:
        return EXIT_PARENT_GONE
    if not isinstance(hello, Hello) or hello.version != PROTOCOL_VERSION:
        got = getattr(hello, "version", type(hello).__name__)
        exc = RuntimeError(f"protocol mismatch: child speaks {PROTOCOL_VERSION}, got {got}")
        frames.send(Fatal(error=error_info(exc)))
        return EXIT_FATAL
    if hello.supervisor_pid != supervisor_pid:
        exc = RuntimeError(f"hello from pid {hello.supervisor_pid}, expected {supervisor_pid}")
        frames.send(Fatal(error=error_info(exc)))
        return EXIT_FATAL
    sys.path[:] = hello.sys_path
    if hello.initializer:
        try:
            import_function(hello.initializer)()
        except BaseException as exc:
            frames.send(Fatal(error=error_info(exc)))
            return EXIT_FATAL
    signal.signal(_STOP_SIGNAL, _on_stop_signal)
    inbox: queue.SimpleQueue[RunJob | Shutdown] = queue.SimpleQueue()
    threading.Thread(target=_reader, args=(frames, inbox), daemon=True).start()
    frames.send(Ready(version=PROTOCOL_VERSION, pid=os.getpid()))
    while True:
        message = inbox.get()
        if isinstance(message, Shutdown):
            return 0
        frames.send(Started(job_id=message.job_id))  # before any of the job's code runs
        done = run_job(message)
        try:
            frames.send(done)
        except ProtocolError as exc:  # e.g. a meta or result too large for one frame
            frames.send(JobDone(job_id=done.job_id, ok=False, meta=b"{}", error=error_info(exc)))


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="chancy.supervisor.child")
    parser.add_argument("--fd", type=int, required=True, help="the protocol channel")
    parser.add_argument("--parent", type=int, required=True, help="the supervisor's pid")
    parser.add_argument("--private-shm", action="store_true", help="a /dev/shm of its own")
    args = parser.parse_args(argv)
    code = serve(args.fd, args.parent, private_shm=args.private_shm)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
