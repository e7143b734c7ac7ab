"""Job functions run by the supervisor tests inside real child worker processes."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path

from chancy.job import QueuedJob

MiB = 1024 * 1024


def returns(value: int = 1) -> int:
    return value


def raises(message: str = "boom") -> None:
    raise ValueError(message)


def exits(code: int = 3) -> None:
    sys.exit(code)


def hard_exit(code: int = 7) -> None:
    os._exit(code)


def segfault() -> None:
    ctypes.string_at(0)


_leaked: list[bytes] = []


def hygiene() -> dict[str, object]:
    """What the child set up before this job: its parent-death signal, core limit, cgroup."""
    sig = ctypes.c_int(0)
    ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
    import resource

    with open("/proc/self/cgroup") as f:
        cgroups = f.read()
    return {
        "pdeathsig": sig.value,
        "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
        "cgroup": cgroups,
        "sid": os.getsid(0),
        "pid": os.getpid(),
        "stdin": os.readlink("/proc/self/fd/0"),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
    }


_calls = 0


def count_calls() -> int:
    """How many times this process ran this job (module state survives between jobs)."""
    global _calls
    _calls += 1
    return _calls


def leaks(mib: int = 60) -> int:
    """Keep *mib* MiB (touched) alive in the child after returning: a leak; the child's RSS."""
    _leaked.append(b"\x01" * (mib * MiB))
    return _rss()


def wait_forever(pid_file: str) -> None:
    """Write our pid where the test can find it, then block (to be killed from outside)."""
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        time.sleep(0.05)


def pid() -> None:
    """Report nothing; the outcome carries the child's pid."""


def returns_set() -> set[int]:
    """A return value that is not JSON."""
    return {1, 2}


def _rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _allocate(total_mib: int, marker: str | None = None, with_parent: bool = False) -> None:
    """Allocate (and touch) *total_mib* in 5 MiB steps, then hold it.

    With *marker*, append ``time.time() rss`` to that file before each step (unbuffered),
    so the moment RSS crossed a limit can be bounded from outside after a kill; with
    *with_parent*, the RSS logged includes the parent's (the tree the supervisor sums).
    """
    parent = os.getppid()
    log = open(marker, "a", buffering=1) if marker else None
    chunks = []
    for _ in range(total_mib // 5):
        if log is not None:
            rss = _rss() + (_rss(parent) if with_parent else 0)
            log.write(f"{time.time()!r} {rss}\n")
        chunks.append(b"\x01" * (5 * MiB))  # touched pages: they count in RSS
    time.sleep(30)


def allocate(total_mib: int = 600, marker: str | None = None) -> None:
    _allocate(total_mib, marker)


def fork_and_allocate(
    total_mib: int = 600, pid_file: str | None = None, marker: str | None = None
) -> None:
    """A grandchild allocates; the child itself stays small and waits for it."""
    child = os.fork()
    if child == 0:
        try:
            if pid_file:
                Path(pid_file).write_text(str(os.getpid()))
            _allocate(total_mib, marker, with_parent=True)
        finally:
            os._exit(0)
    os.waitpid(child, 0)


def catch_everything(pid_file: str | None = None) -> None:
    """Swallow every exception, including the stop request, forever."""
    if pid_file:
        Path(pid_file).write_text(str(os.getpid()))
    while True:
        try:
            while True:
                time.sleep(0.01)
        except BaseException:
            pass


def ignore_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    while True:
        time.sleep(0.01)


def stuck_in_c() -> None:
    """Blocked in a C call: a thread join on a sleeping thread, signals blocked."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
    t = threading.Thread(target=time.sleep, args=(3600,), daemon=True)
    t.start()
    t.join()


def spin_in_c(pid_file: str | None = None) -> None:
    """A tight loop inside C code that never returns to the interpreter (nor lets the
    child's reader thread run: the GIL is never released)."""
    if pid_file:
        Path(pid_file).write_text(str(os.getpid()))
    sum(range(10**13))


def sleep(seconds: float = 0.1) -> None:
    time.sleep(seconds)


def prints(text: str = "hello from the job") -> str:
    print(text)
    print("\x00\x00\x00\x05garbage-looking output", flush=True)
    sys.stderr.write("to stderr\n")
    return text


def write_garbage() -> None:
    """Write garbage onto the protocol channel the child talks on."""
    fd = int(sys.argv[sys.argv.index("--fd") + 1])
    os.write(fd, b"\x00\x00\x00\x10this is not msgpack!!")
    time.sleep(5)


def write_oversized_header() -> None:
    fd = int(sys.argv[sys.argv.index("--fd") + 1])
    os.write(fd, b"\xff\xff\xff\xff")
    time.sleep(5)


def set_meta(*, job: QueuedJob) -> None:
    """Receives its QueuedJob; what it writes into meta comes back with the outcome."""
    import resource

    job.meta["touched"] = job.id
    job.meta["rlimit_cpu"] = list(resource.getrlimit(resource.RLIMIT_CPU))
    job.meta["rlimit_core"] = list(resource.getrlimit(resource.RLIMIT_CORE))
    job.meta["sid_is_pid"] = os.getsid(0) == os.getpid()
    job.meta["fds"] = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))


def environment(names: list[str]) -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in names}


INIT_COUNT = 0


def initializer() -> None:
    """Initializer: counts its runs in this process and records them in a file."""
    global INIT_COUNT
    INIT_COUNT += 1
    path = os.environ.get("CHANCY_TEST_INIT_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")


def init_count() -> None:
    if INIT_COUNT != 1:
        raise RuntimeError(f"initializer ran {INIT_COUNT} times in this child")


def failing_initializer() -> None:
    raise RuntimeError("initializer exploded")


async def async_job(value: int = 2) -> int:
    import asyncio

    await asyncio.sleep(0.01)
    if value < 0:
        raise ValueError("negative")
    return value


async def async_sleep(seconds: float = 30) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def _write_atomic(path: str, text: str) -> None:
    Path(path + ".tmp").write_text(text)
    os.replace(path + ".tmp", path)


def fork_and_wait(pid_file: str) -> None:
    """Fork a grandchild that lives forever (in the child's process group), then block.

    The grandchild's pid goes to ``<pid_file>.grandchild``, then the child's to *pid_file*.
    """
    grandchild = os.fork()
    if grandchild == 0:
        _write_atomic(pid_file + ".grandchild", str(os.getpid()))
        while True:
            time.sleep(0.05)
    while not Path(pid_file + ".grandchild").exists():
        time.sleep(0.01)
    _write_atomic(pid_file, str(os.getpid()))
    while True:
        time.sleep(0.05)


def write_env(path: str, names: list[str]) -> None:
    """Write which of *names* this child sees (JSON) to *path*."""
    import json

    Path(path).write_text(json.dumps({n: os.environ.get(n) for n in names}))


def write_truncated_frame() -> None:
    """A frame header promising 1000 bytes, then 10 of them, then silence."""
    fd = int(sys.argv[sys.argv.index("--fd") + 1])
    os.write(fd, (1000).to_bytes(4, "big") + b"0123456789")
    time.sleep(30)


def fake_done(*, job: QueuedJob) -> None:
    """Write a well-formed "done" frame for its own job, then run on (and never answer)."""
    from chancy.wire import JobDone, encode

    fd = int(sys.argv[sys.argv.index("--fd") + 1])
    os.write(fd, encode(JobDone(job_id=job.id, ok=True, meta=b"{}")))
    time.sleep(30)


def _daemonize(pidfile: str) -> None:
    """Leave the session and the tree (setsid, double fork): the daemon is init's child."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open(pidfile + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(pidfile + ".tmp", pidfile)
            time.sleep(600)
        os._exit(0)
    os.wait()
    while not os.path.exists(pidfile):
        time.sleep(0.01)


def daemon_then_hang(pidfile: str) -> None:
    _daemonize(pidfile)
    while True:  # deaf to the stop: killed at the end of the grace
        with contextlib.suppress(BaseException):
            time.sleep(60)


def daemon_then_return(pidfile: str) -> str:
    _daemonize(pidfile)
    return "done"


def fill_shm(path: str, mib: int, pace: float = 0.0) -> None:
    """Write *mib* MiB into a tmpfs file (*pace* seconds per MiB): memory that is no
    process's RSS."""
    chunk = b"x" * (1024 * 1024)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(chunk)
            f.flush()
            time.sleep(pace)
    time.sleep(30)


def shm_then_hang(name: str, mib: int = 20) -> None:
    """Leave a file in /dev/shm, say where it lives, then hang until killed."""
    with open(f"/dev/shm/{name}", "wb") as f:
        f.write(b"x" * (mib * 1024 * 1024))
    print(f"wrote /dev/shm/{name} in mount namespace {os.readlink('/proc/self/ns/mnt')}")
    time.sleep(600)
