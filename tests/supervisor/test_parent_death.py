"""A supervisor killed with SIGKILL leaves no child behind (busy or idle)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from supervisor_helpers import gone

SCRIPT = Path(__file__).with_name("parent_script.py")


def wait_until(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_children_exit_when_the_supervisor_is_sigkilled(tmp_path: Path, backend: str) -> None:
    supervisor = subprocess.Popen([sys.executable, str(SCRIPT), backend, str(tmp_path)])
    children_file = tmp_path / "children"
    try:
        assert wait_until(lambda: children_file.exists() and children_file.read_text(), 30)
        children = [int(p) for p in children_file.read_text().split()]
        busy = int((tmp_path / "busy").read_text())
        assert busy in children and len(children) == 2
        assert not any(gone(pid) for pid in children)
        os.kill(supervisor.pid, signal.SIGKILL)
        supervisor.wait(5)
        for pid in children:
            assert wait_until(lambda pid=pid: gone(pid), 5), f"child {pid} outlived its parent"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
