"""Blocking helpers over a child's process tree (run them off the event loop)."""

from __future__ import annotations

import os
import signal

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


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until *procs* are gone; returns those still alive after *timeout*."""
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return alive
