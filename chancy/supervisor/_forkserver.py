"""The fork server: ``python -m chancy.supervisor._forkserver --fd N --parent PID``.

A clean template process that a :class:`~chancy.supervisor.ChildPool` starts once (a fresh
interpreter, spawned exactly like a child: scrubbed environment, its own session, the
supervisor's ``sys.path``) and that then forks each new child worker on request, so that
replacing a child costs a ``fork`` of a small, already-imported process instead of an
interpreter start. The supervisor itself is never forked.

The template is single-threaded and imports only what every child imports before its first
job (the bootloader :mod:`chancy.supervisor.child` and what it pulls in); the user's job
modules and the initializer are imported in each child, after the fork, as in a fresh child:
no user code ever runs in the template, so nothing it does (threads, connections, state) can
be inherited by the next child.

Protocol on the ``SOCK_SEQPACKET`` socket ``--fd`` (one datagram per message):

* template -> supervisor ``R <pid>`` once, when it is ready;
* supervisor -> template ``F`` with two descriptors (``SCM_RIGHTS``): the child's protocol
  socket and its output socket; the template forks, the child leads a new session, and the
  template answers ``P <pid>`` (or ``E <reason>``);
* template -> supervisor ``X <pid> <code>`` when a child it forked exits (the template is its
  parent and reaps it; ``code`` as :attr:`subprocess.Popen.returncode`: negative for a
  signal).

Parent death, both lines of defence kept: a forked child's only other end of its protocol
socket is held by the supervisor (the template closes its copy right after the fork), so a
dead supervisor means end-of-file and the child exits; and the child sets
``PR_SET_PDEATHSIG(SIGKILL)`` towards its parent, the template, which sets it towards the
supervisor and exits at its own end-of-file: a SIGKILLed supervisor takes the template down,
and the template's death takes the children. (So a template that dies kills the children it
forked; the pool starts a new template and those children's jobs end as a dead child's do.)
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import signal
import socket
import sys

# What every child imports before its first job: imported once here, inherited by each fork.
from chancy.supervisor import child

_PR_SET_PDEATHSIG = 1
EXIT_PARENT_GONE = child.EXIT_PARENT_GONE


def _harden(parent_pid: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(EXIT_PARENT_GONE)
    os.dup2(2, 1)


def _become_child(
    channel: int,
    output: int,
    ready: int,
    control: socket.socket,
    template_pid: int,
    supervisor_pid: int,
    private_shm: bool,
) -> None:
    """In the forked child: the state a fresh child starts with, then serve. Never returns."""
    code = child.EXIT_FATAL
    try:
        os.setsid()
        os.write(ready, b"x")  # the template answers only once the child leads its session
        control.detach()  # its descriptor is closed below with the rest
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.dup2(channel, 3)
        os.closerange(4, 1 << 20)  # close_range(2) on Linux: no descriptor of the template
        # What a fresh child's command line would be (jobs may look, as the tests' do).
        sys.argv[:] = [child.__file__, "--fd", "3", "--parent", str(template_pid)]
        if private_shm:
            sys.argv.append("--private-shm")
        code = child.serve(3, template_pid, supervisor_pid=supervisor_pid, private_shm=private_shm)
    except BaseException as exc:  # never fall back into the template's loop
        with contextlib.suppress(BaseException):
            print(f"chancy child {os.getpid()}: {exc!r}", file=sys.stderr)
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        control.send(b"X %d %d" % (pid, os.waitstatus_to_exitcode(status)))


def serve(fd: int, parent_pid: int, *, private_shm: bool = False) -> int:
    """Fork children on request until the supervisor closes the socket."""
    _harden(parent_pid)
    control = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the select below
    me = os.getpid()
    control.send(b"R %d" % me)
    while True:
        readable, _, _ = select.select([control.fileno(), wake_r], [], [])
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
            _reap(control)
        if control.fileno() not in readable:
            continue
        try:
            message, fds, _flags, _addr = socket.recv_fds(control, 64, 4)
        except OSError:
            return EXIT_PARENT_GONE
        if not message:
            return 0  # the supervisor closed its end (or died)
        if message != b"F" or len(fds) != 2:
            for extra in fds:
                os.close(extra)
            control.send(b"E bad request")
            continue
        ready_r, ready_w = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            control.send(b"E " + str(exc).encode()[:200])
            pid = -1
        if pid == 0:
            os.close(ready_r)
            _become_child(
                fds[0], fds[1], ready_w, control, me, parent_pid, private_shm
            )  # never returns
        os.close(ready_w)
        for passed in fds:
            os.close(passed)  # only the child (and the supervisor) hold them now
        if pid > 0:
            os.read(ready_r, 1)  # the child leads its own session (or has died already)
            control.send(b"P %d" % pid)
        os.close(ready_r)
        _reap(control)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="chancy.supervisor._forkserver")
    parser.add_argument("--fd", type=int, required=True, help="the control socket")
    parser.add_argument("--parent", type=int, required=True, help="the supervisor's pid")
    parser.add_argument("--private-shm", action="store_true", help="each child: own /dev/shm")
    args = parser.parse_args(argv)
    try:
        code = serve(args.fd, args.parent, private_shm=args.private_shm)
    except OSError:  # the supervisor went away mid-message
        code = EXIT_PARENT_GONE
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
