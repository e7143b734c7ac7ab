"""One child worker process as seen from the supervisor: spawn, handshake, talk, stop."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import psutil
from anyio.lowlevel import RunVar

from chancy.wire import (
    FRAME_TIMEOUT,
    MAX_FRAME_SIZE,
    PROTOCOL_VERSION,
    Fatal,
    FrameStream,
    Hello,
    Message,
    ProtocolError,
    Ready,
    Shutdown,
)
from chancy.wire._socket import SocketStream

from . import _tree
from ._env import child_environment
from .errors import ChildStartError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._cgroup import Cgroups, ChildCgroup

#: How many of a child's last output lines are kept to explain its death.
OUTPUT_TAIL_LINES = 20


_LIMITER: RunVar[anyio.CapacityLimiter] = RunVar("chancy_supervisor_threads")


def thread_limiter() -> anyio.CapacityLimiter:
    """The supervisor's own worker-thread budget for its short /proc and kill syscalls.

    Kept apart from anyio's default limiter so that threads blocked elsewhere (database
    work under trio runs in threads) can never delay a memory check or a kill.
    """
    try:
        return _LIMITER.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(16)
        _LIMITER.set(limiter)
        return limiter


def describe_returncode(returncode: int) -> str:
    """``"killed by signal SIGSEGV"`` or ``"exited with code 3"``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by signal {name}"
    return f"exited with code {returncode}"


class ChildProcess:
    """A running ``python -m chancy.supervisor.child``.

    Spawned with :func:`subprocess.Popen` called directly in the event loop's thread, not in
    a worker thread: ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child
    exits, and worker threads (trio's ``open_process`` uses one) come and go. The protocol
    runs over a ``socketpair`` passed with ``pass_fds``; the child's stdout and stderr share
    a second socketpair whose lines go to the supervisor's logger.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        process: psutil.Process,
        frames: FrameStream,
        output: SocketStream,
        logger: logging.Logger,
    ) -> None:
        self.popen = popen
        self.process = process  # captured at spawn: pids get reused, this handle does not
        self.pid = popen.pid
        self.frames = frames
        self.jobs_run = 0
        #: Called with the pid once the child and its tree are gone (the pool's watchdog).
        self.on_gone: Callable[[int], None] | None = None
        #: The job the child runs or ran last: its output lines are tagged with it (output
        #: can reach the log just after the job's result).
        self.current_job: str | None = None
        self.output_tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL_LINES)
        self._output = output
        self._output_done = anyio.Event()
        self._swept: anyio.Event | None = None
        #: The child's own cgroup, where the supervisor could make one (see `_cgroup`).
        self.cgroup: ChildCgroup | None = None
        self._logger = logger

    @classmethod
    async def spawn(
        cls,
        task_group: anyio.abc.TaskGroup,
        *,
        sys_path: list[str] | None = None,
        initializer: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        handshake_timeout: float = 60.0,
        max_frame_size: int = MAX_FRAME_SIZE,
        frame_timeout: float = FRAME_TIMEOUT,
        logger: logging.Logger | None = None,
        cgroups: Cgroups | None = None,
        private_shm: bool = False,
    ) -> ChildProcess:
        """Start a child, pump its output into *task_group*, and complete the handshake."""
        logger = logger or logging.getLogger("chancy.supervisor")
        path = list(sys.path if sys_path is None else sys_path)
        channel, child_channel = socket.socketpair()
        output, child_output = socket.socketpair()
        try:
            # Popen in the loop's thread on purpose (see the class docstring): a fork+exec
            # of a few ms, and no worker thread whose exit could signal the child.
            popen = subprocess.Popen(  # noqa: ASYNC220
                [
                    sys.executable,
                    "-P",  # no cwd or script dir in front: chancy comes from PYTHONPATH
                    "-u",
                    "-m",
                    "chancy.supervisor.child",
                    "--fd",
                    str(child_channel.fileno()),
                    "--parent",
                    str(os.getpid()),
                    *(["--private-shm"] if private_shm else []),
                ],
                stdin=subprocess.DEVNULL,
                stdout=child_output.fileno(),
                stderr=child_output.fileno(),
                pass_fds=(child_channel.fileno(),),
                close_fds=True,
                start_new_session=True,
                env=child_environment(path, extra=extra_env),
            )
        except BaseException:
            for s in (channel, child_channel, output, child_output):
                s.close()
            raise
        finally:
            child_channel.close()
            child_output.close()
        process = psutil.Process(popen.pid)
        frames = FrameStream(
            SocketStream(channel), max_size=max_frame_size, frame_timeout=frame_timeout
        )
        output_stream = SocketStream(output)
        child = cls(popen, process, frames, output_stream, logger)
        if cgroups is not None:  # before the handshake: no job code has run yet
            child.cgroup = cgroups.for_child(popen.pid)
        task_group.start_soon(child._pump_output)
        try:
            with anyio.fail_after(handshake_timeout):
                hello = Hello(
                    version=PROTOCOL_VERSION,
                    sys_path=path,
                    supervisor_pid=os.getpid(),
                    initializer=initializer,
                )
                await frames.send(hello)
                answer = await frames.receive()
        except BaseException as exc:
            await child.kill()
            if isinstance(exc, TimeoutError):
                raise ChildStartError(
                    f"child {child.pid} did not answer within {handshake_timeout} s"
                ) from None
            if isinstance(
                exc, anyio.EndOfStream | ProtocolError | OSError | anyio.BrokenResourceError
            ):
                with anyio.CancelScope(shield=True):
                    tail = await child.last_output()
                code = child.popen.returncode
                how = describe_returncode(code) if code is not None else "still running"
                raise ChildStartError(
                    f"child {child.pid} failed its handshake ({how}): {exc!r}"
                    + (f"; its last output:\n{tail}" if tail else "")
                ) from exc
            raise
        if isinstance(answer, Fatal):
            await child.kill()
            raise ChildStartError(
                f"child {child.pid} could not start: {answer.error.type}: {answer.error.message}"
                f"\n{answer.error.traceback}"
            )
        if not isinstance(answer, Ready) or answer.version != PROTOCOL_VERSION:
            await child.kill()
            raise ChildStartError(f"child {child.pid} answered the handshake with {answer!r}")
        logger.debug("child %d ready", child.pid)
        return child

    async def _pump_output(self) -> None:
        """Log the child's stdout/stderr line by line until every writer has closed it."""
        pending = b""
        try:
            async with self._output:
                async for chunk in self._output:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        self._log_line(line)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            if pending:
                self._log_line(pending)
            self._output_done.set()

    async def last_output(self, wait: float = 1.0) -> str:
        """The child's last output lines, once its output ended (or after *wait* seconds)."""
        with anyio.move_on_after(wait):
            await self._output_done.wait()
        return "\n".join(self.output_tail)

    def _log_line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        self.output_tail.append(line)
        job = self.current_job
        extra = {"child_pid": self.pid, "job_id": job}
        if job is None:
            self._logger.info("child %d: %s", self.pid, line, extra=extra)
        else:
            self._logger.info("child %d, job %s: %s", self.pid, job, line, extra=extra)

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    async def send(self, message: Message) -> None:
        await self.frames.send(message)

    async def receive(self) -> Message:
        return await self.frames.receive()

    def memory(self) -> int:
        """Bytes the job's processes hold: RSS over the tree, or (where the child has a cgroup)
        what its cgroup is charged, tmpfs pages and escaped processes included (blocking)."""
        rss = _tree.tree_rss(self.process)
        if self.cgroup is not None:
            rss = max(rss, self.cgroup.memory_bytes() or 0)
        return rss

    async def sweep(self) -> list[int]:
        """Kill what the last job left running in the child's cgroup (daemons, grandchildren
        that left the session): no process a job starts outlives the job."""
        cgroup = self.cgroup
        if cgroup is None or cgroup.pids() in ([], [self.pid]):  # the usual case: one read
            return []
        with anyio.CancelScope(shield=True):
            return await anyio.to_thread.run_sync(
                cgroup.kill_others, self.pid, limiter=thread_limiter()
            )

        return []  # (a shielded scope swallows nothing; for the type checker)

    def has_input(self) -> bool:
        """Whether the child has sent something not read yet (or closed its channel).

        An idle child must send nothing: input while idle means a broken or dead child.
        """
        if self.frames.buffered:
            return True
        stream = self.frames.stream
        try:
            readable, _, _ = select.select([stream.fileno()], [], [], 0)  # type: ignore[attr-defined]
        except (OSError, ValueError):  # closed
            return True
        return bool(readable)

    async def wait(self, timeout: float) -> int | None:
        """Reap the child; its return code, or ``None`` if it is still alive after *timeout*."""
        delay = 0.001
        with anyio.move_on_after(timeout):
            while (code := self.popen.poll()) is None:
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.02)
            return code
        return self.popen.poll()

    async def kill(self, *, wait: float = 5.0) -> int | None:
        """SIGKILL the whole tree at once and wait (shielded) until it is gone.

        Done once: later (or concurrent) calls wait for that sweep and report the return
        code (a group id must not be signalled long after its processes are gone: the number
        may be reused).
        """
        if self._swept is not None:
            with anyio.CancelScope(shield=True):
                await self._swept.wait()
            return self.popen.poll()
        self._swept = anyio.Event()
        try:
            return await self._kill(wait)
        finally:
            self._swept.set()

    async def _kill(self, wait: float) -> int | None:
        with anyio.CancelScope(shield=True):
            # The child leads its own session and group; the group id cannot be reused while
            # any member lives, so killing it is safe even after the child was reaped.
            procs = await anyio.to_thread.run_sync(
                _tree.kill_tree, self.process, self.pid, limiter=thread_limiter()
            )
            if self.cgroup is not None:  # what left the session and the tree too
                await anyio.to_thread.run_sync(self.cgroup.kill, wait, limiter=thread_limiter())
            others = [p for p in procs if p.pid != self.pid]
            code = await self.wait(wait)
            with anyio.move_on_after(wait):
                while others:
                    others = await anyio.to_thread.run_sync(
                        _tree.still_alive, others, limiter=thread_limiter()
                    )
                    if others:
                        await anyio.sleep(0.002)
            await self._close_channel()
            if code is not None and self.cgroup is not None:
                self.cgroup.remove()
            if code is not None and self.on_gone is not None:
                on_gone, self.on_gone = self.on_gone, None
                on_gone(self.pid)
            return code

        return None  # (unreachable: the scope is shielded; for the type checker)

    async def stop(self, *, ask_timeout: float = 2.0, term_timeout: float = 2.0) -> int | None:
        """The one shutdown ladder: ask, wait, SIGTERM the group, wait, kill the tree.

        Everything runs in a shielded scope, so a cancelled caller still reaps the child.
        """
        with anyio.CancelScope(shield=True):
            if self.popen.poll() is None:
                with anyio.move_on_after(ask_timeout):
                    with contextlib.suppress(
                        OSError, anyio.BrokenResourceError, anyio.ClosedResourceError
                    ):
                        await self.send(Shutdown())
                code = await self.wait(ask_timeout)
                if code is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(self.pid, signal.SIGTERM)
                    code = await self.wait(term_timeout)
            # Always sweep the tree: a job's grandchildren must not outlive the child.
            return await self.kill()

        return None  # (unreachable: the scope is shielded; for the type checker)

    async def _close_channel(self) -> None:
        with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self.frames.aclose()


class Watchdog:
    """The pool's watchdog process (see :mod:`chancy.supervisor._watchdog`).

    Started with ``-I`` from its file, so it imports nothing of chancy; its stdin is the
    only end of its pipe, held by the supervisor alone. Registration is a blocking write of
    a few bytes to a pipe that the watchdog keeps draining.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from . import _watchdog

        self._popen = subprocess.Popen(
            [sys.executable, "-I", _watchdog.__file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    def _send(self, line: bytes) -> None:
        if self._popen is None or self._popen.stdin is None:
            return
        try:
            self._popen.stdin.write(line)
            self._popen.stdin.flush()
        except (OSError, ValueError) as exc:
            self._logger.warning("supervisor watchdog unreachable: %s", exc)
            self._popen.stdin = None

    def add(self, pgid: int) -> None:
        self._send(b"+%d\n" % pgid)

    def remove(self, pgid: int) -> None:
        self._send(b"-%d\n" % pgid)

    async def close(self, timeout: float = 5.0) -> None:
        """End it (it kills the groups still registered) and reap it; shielded."""
        popen, self._popen = self._popen, None
        if popen is None:
            return
        with anyio.CancelScope(shield=True):
            if popen.stdin is not None:
                with contextlib.suppress(OSError):
                    popen.stdin.close()
            with anyio.move_on_after(timeout):
                while popen.poll() is None:  # noqa: ASYNC110 - a process exit has no event here
                    await anyio.sleep(0.005)
            if popen.poll() is None:
                popen.kill()
                popen.wait()
