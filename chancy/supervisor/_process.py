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
        popen: subprocess.Popen[bytes] | Forked,
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
        forkserver: ForkServer | None = None,
    ) -> ChildProcess:
        """Start a child, pump its output into *task_group*, and complete the handshake.

        With *forkserver*, the child is forked by that template (which was started with the
        same environment and ``sys.path``) instead of started as a fresh interpreter.
        """
        logger = logger or logging.getLogger("chancy.supervisor")
        path = list(sys.path if sys_path is None else sys_path)
        channel, child_channel = socket.socketpair()
        output, child_output = socket.socketpair()
        popen: subprocess.Popen[bytes] | Forked
        try:
            if forkserver is not None:
                popen = await forkserver.fork(child_channel, child_output)
            else:
                popen = cls._popen(path, child_channel, child_output, extra_env, private_shm)
        except BaseException:
            channel.close()
            output.close()
            raise
        finally:
            child_channel.close()
            child_output.close()
        try:
            process = psutil.Process(popen.pid)
        except psutil.Error:
            channel.close()
            output.close()
            code = popen.poll()
            how = describe_returncode(code) if code is not None else "gone"
            raise ChildStartError(f"child {popen.pid} {how} before its handshake") from None
        frames = FrameStream(
            SocketStream(channel), max_size=max_frame_size, frame_timeout=frame_timeout
        )
        output_stream = SocketStream(output)
        child = cls(popen, process, frames, output_stream, logger)
        return await child._handshake(
            task_group, path, initializer, handshake_timeout, cgroups, logger
        )

    @staticmethod
    def _popen(
        path: list[str],
        child_channel: socket.socket,
        child_output: socket.socket,
        extra_env: Mapping[str, str] | None,
        private_shm: bool,
    ) -> subprocess.Popen[bytes]:
        """Start a fresh interpreter on the child's ends of the sockets."""
        # Popen in the loop's thread on purpose (see the class docstring): a fork+exec
        # of a few ms, and no worker thread whose exit could signal the child.
        return subprocess.Popen(
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

    async def _handshake(
        self,
        task_group: anyio.abc.TaskGroup,
        path: list[str],
        initializer: str | None,
        handshake_timeout: float,
        cgroups: Cgroups | None,
        logger: logging.Logger,
    ) -> ChildProcess:
        child = self
        if cgroups is not None:  # before the handshake: no job code has run yet
            child.cgroup = cgroups.for_child(child.pid)
        task_group.start_soon(child._pump_output)
        try:
            with anyio.fail_after(handshake_timeout):
                hello = Hello(
                    version=PROTOCOL_VERSION,
                    sys_path=path,
                    supervisor_pid=os.getpid(),
                    initializer=initializer,
                )
                await child.frames.send(hello)
                answer = await child.frames.receive()
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


class Forked:
    """A child forked by a :class:`ForkServer`: the part of :class:`subprocess.Popen` the
    pool uses (``pid``, ``poll()``, ``returncode``), fed by the template's exit reports."""

    def __init__(self, pid: int, server: ForkServer) -> None:
        self.pid = pid
        self._server = server
        self._code: int | None = None

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def poll(self) -> int | None:
        if self._code is None:
            self._code = self._server.exit_code(self.pid)
        return self._code


class ForkServer:
    """The supervisor's end of a pool's fork server (:mod:`chancy.supervisor._forkserver`).

    Started like a child (in the event loop's thread, scrubbed environment, own session),
    it forks each new child on :meth:`fork`. Its children are reaped by it; their exit codes
    come back as reports and are read by :meth:`exit_code`. If it dies, :attr:`gone` turns
    true, a warning is logged, and a child it forked whose exit was not reported counts as
    killed by ``SIGKILL`` once it is gone (its ``PR_SET_PDEATHSIG``).
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        sys_path: list[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        private_shm: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self._logger = logger
        self._path = list(sys.path if sys_path is None else sys_path)
        self._extra_env = extra_env
        self._private_shm = private_shm
        self._timeout = timeout
        self._popen: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._codes: dict[int, int] = {}
        self._forked: dict[int, psutil.Process] = {}
        self._lock = anyio.Lock()
        self._ready = anyio.Event()
        self._reply: bytes | None = None
        self._replied: anyio.Event | None = None
        self._closing = False
        #: True once the template is gone (or could not be started).
        self.gone = False

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Start the template and wait until it is ready (:class:`ChildStartError` if not)."""
        from . import _forkserver

        control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        output, their_output = socket.socketpair()
        try:
            # In the loop's thread, like a child: its PR_SET_PDEATHSIG follows this thread.
            self._popen = subprocess.Popen(  # noqa: ASYNC220
                [
                    sys.executable,
                    "-P",
                    "-u",
                    "-m",
                    _forkserver.__name__,
                    "--fd",
                    str(theirs.fileno()),
                    "--parent",
                    str(os.getpid()),
                    *(["--private-shm"] if self._private_shm else []),
                ],
                stdin=subprocess.DEVNULL,
                stdout=their_output.fileno(),
                stderr=their_output.fileno(),
                pass_fds=(theirs.fileno(),),
                close_fds=True,
                start_new_session=True,
                env=child_environment(self._path, extra=self._extra_env),
            )
        except BaseException:
            control.close()
            output.close()
            self.gone = True
            raise
        finally:
            theirs.close()
            their_output.close()
        control.setblocking(False)
        self._control = control
        task_group.start_soon(self._pump, SocketStream(output))
        task_group.start_soon(self._read)
        with anyio.move_on_after(self._timeout):
            await self._ready.wait()
        if not self._ready.is_set() or self.gone:
            await self.close()
            raise ChildStartError(f"the fork server did not start within {self._timeout} s")
        self._logger.debug("fork server %d ready", self._popen.pid)

    async def _pump(self, output: SocketStream) -> None:
        pending = b""
        try:
            async with output:
                async for chunk in output:
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        self._logger.warning(
                            "fork server %s: %s", self.pid, line.decode("utf-8", "replace")
                        )
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    async def _read(self) -> None:
        control = self._control
        assert control is not None
        ended = False  # by end-of-file or an error, not by cancellation
        try:
            while True:
                try:
                    data = control.recv(256)
                except BlockingIOError:
                    await anyio.wait_readable(control)
                    continue
                if not data:
                    break
                kind, _, rest = data.partition(b" ")
                if kind == b"X":
                    pid, code = (int(x) for x in rest.split())
                    self._codes[pid] = code
                    self._forked.pop(pid, None)
                elif kind in (b"P", b"E") and self._replied is not None:
                    self._reply = data
                    self._replied.set()
                elif kind == b"R":
                    self._ready.set()
            ended = True
        except (OSError, ValueError, anyio.ClosedResourceError, anyio.BrokenResourceError):
            ended = True
        finally:
            self.gone = True
            if self._replied is not None:
                self._replied.set()
            if ended and not self._closing:
                with anyio.move_on_after(1.0):  # its exit follows its socket's end at once
                    while self._popen is not None and self._popen.poll() is None:  # noqa: ASYNC110
                        await anyio.sleep(0.005)
                status = self._popen.poll() if self._popen is not None else None
                how = describe_returncode(status) if status is not None else "closed its socket"
                self._logger.warning(
                    "the fork server %s %s; the children it forked die with it, new ones "
                    "come from a new fork server",
                    self.pid,
                    how,
                )

    async def fork(self, channel: socket.socket, output: socket.socket) -> Forked:
        """Fork a child on the given ends of its sockets (the caller closes its copies)."""
        async with self._lock:
            control = self._control
            if self.gone or control is None:
                raise ChildStartError("the fork server is gone")
            self._reply = None
            self._replied = anyio.Event()
            fds = [channel.fileno(), output.fileno()]
            while True:
                try:
                    socket.send_fds(control, [b"F"], fds)
                    break
                except BlockingIOError:
                    await anyio.wait_writable(control)
                except OSError as exc:
                    raise ChildStartError(f"the fork server is unreachable: {exc}") from exc
            with anyio.move_on_after(self._timeout):
                await self._replied.wait()
            reply, self._reply, self._replied = self._reply, None, None
        if reply is None:
            if not self.gone:
                self._logger.warning("the fork server %s did not answer; stopping it", self.pid)
                await self.close()
            raise ChildStartError("the fork server did not fork a child")
        kind, _, rest = reply.partition(b" ")
        if kind != b"P":
            raise ChildStartError(
                f"the fork server could not fork: {rest.decode(errors='replace')}"
            )
        pid = int(rest)
        if pid not in self._codes:  # (else it is gone already)
            with contextlib.suppress(psutil.Error):
                self._forked[pid] = psutil.Process(pid)
        return Forked(pid, self)

    def exit_code(self, pid: int) -> int | None:
        """How child *pid* exited, or None while it runs (the report is consumed)."""
        code = self._codes.pop(pid, None)
        if code is not None or not self.gone:
            return code
        # The template died: the kernel killed its children (PR_SET_PDEATHSIG) and init
        # reaps them. Gone means SIGKILL.
        proc = self._forked.get(pid)
        if proc is not None and _tree.still_alive([proc]):
            return None
        self._forked.pop(pid, None)
        return -signal.SIGKILL

    async def close(self, timeout: float = 5.0) -> None:
        """End the template (its end-of-file) and reap it; shielded."""
        self._closing = True
        with anyio.CancelScope(shield=True):
            control, self._control = self._control, None
            if control is not None:
                anyio.notify_closing(control)
                control.close()
            popen = self._popen
            if popen is None:
                return
            with anyio.move_on_after(timeout):
                while popen.poll() is None:  # noqa: ASYNC110 - a process exit has no event here
                    await anyio.sleep(0.005)
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.kill()
                popen.wait()
