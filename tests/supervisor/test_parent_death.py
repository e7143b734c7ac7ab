"""A supervisor killed with SIGKILL leaves no child behind (busy or idle)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from supervisor_helpers import gone
from support import wait_until

SCRIPT = Path(__file__).with_name("parent_script.py")


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
@pytest.mark.parametrize(
    ("backend", "job"),
    [
        ("asyncio", "wait_forever"),
        ("trio", "wait_forever"),
        # Spinning in C with the GIL held, the child cannot even notice the channel's EOF:
        # only PR_SET_PDEATHSIG gets it (a forked child's parent is the fork server, whose
        # own PR_SET_PDEATHSIG follows the supervisor: the kernel kills both in turn).
        ("asyncio", "spin_in_c"),
        # The job's own subprocess is reparented to init: the pool's watchdog kills it.
        ("trio", "fork_and_wait"),
    ],
)
def test_children_exit_when_the_supervisor_is_sigkilled(
    tmp_path: Path, backend: str, job: str, method: str
) -> None:
    supervisor = subprocess.Popen(
        [sys.executable, str(SCRIPT), backend, str(tmp_path), job, method]
    )
    children_file = tmp_path / "children"
    children: list[int] = []
    try:
        assert wait_until(lambda: children_file.exists() and children_file.read_text(), 30)
        children.extend(int(p) for p in children_file.read_text().split())
        busy = int((tmp_path / "busy").read_text())
        assert busy in children
        assert len(children) == 2
        grandchild_file = tmp_path / "busy.grandchild"
        if grandchild_file.exists():
            children.append(int(grandchild_file.read_text()))
        template_file = tmp_path / "forkserver"
        assert template_file.exists() == (method == "forkserver")
        if method == "forkserver":
            template = int(template_file.read_text())
            assert all(psutil.Process(pid).ppid() == template for pid in children[:2])
            children.append(template)
        assert not any(gone(pid) for pid in children)
        os.kill(supervisor.pid, signal.SIGKILL)
        supervisor.wait(5)
        for pid in children:
            assert wait_until(lambda pid=pid: gone(pid), 5), f"child {pid} outlived its parent"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        for pid in children:  # do not leave a spinning child behind a failed test
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
