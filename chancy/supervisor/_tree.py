"""Blocking helpers over a child's process tree (run them off the event loop)."""

from __future__ import annotations

import os
import signal
import time

import psutil


def descendants(proc: psutil.Process) -> list[psutil.Process]:
    """All living descendants of *proc* (empty if *proc* is gone)."""
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def tree_rss(proc: psutil.Process) -> int:
    """Resident memory in bytes summed over *proc* and all its descendants."""
    total = 0
    for p in [proc, *descendants(proc)]:
        try:
            with p.oneshot():
                total += p.memory_info().rss
        except psutil.Error:  # exited (or a zombie) between listing and reading
            continue
    return total


def kill_tree(proc: psutil.Process, group: int | None) -> list[psutil.Process]:
    """SIGKILL *proc*, its process group *group* and every descendant psutil finds.

    The descendants are listed first (killing the parent would orphan them out of reach),
    then the whole group is killed with one ``killpg`` and the stragglers (processes that
    left the group with ``setsid``) one by one. Returns the processes killed, for waiting.
    """
    procs = [proc, *descendants(proc)]
    if group is not None:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for p in procs:
        try:
            p.kill()  # psutil checks the create time: a reused pid is never hit
        except psutil.Error:
            pass
    return procs


def _dead(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE  # dead, only waiting to be reaped
    except psutil.Error:
        return True


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until *procs* are dead; returns those still alive after *timeout*.

    A zombie counts as dead: it holds no memory, and a job's orphaned grandchild is reaped
    by init (or the nearest subreaper) whenever that gets to it. Do not pass the
    supervisor's own child: it is reaped through its ``Popen``.
    """
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not _dead(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.002)
        alive = [p for p in alive if not _dead(p)]
    return alive
