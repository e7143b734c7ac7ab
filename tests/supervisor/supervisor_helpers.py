"""Helpers shared by the supervisor tests."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import anyio
import psutil

from chancy.job import QueuedJob

JOBS = "supervisor_jobs"
MiB = 1024 * 1024


def packed(func: str, **kwargs: object) -> tuple[str, bytes]:
    """A packed QueuedJob (JSON bytes) running ``supervisor_jobs.<func>(**kwargs)``."""
    job_id = str(uuid.uuid4())
    job = QueuedJob(id=job_id, func=f"{JOBS}.{func}", kwargs=dict(kwargs), queue="test")
    return job_id, json.dumps(job.pack()).encode()


async def wait_for_file(path: Path, timeout: float = 20.0) -> str:
    """The content of *path* once a child has written it."""
    with anyio.fail_after(timeout):
        while not (path.exists() and path.read_text()):
            await anyio.sleep(0.01)
    return path.read_text()


def gone(pid: int) -> bool:
    """Whether *pid* is no longer a living process (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_gone(pid: int, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not gone(pid):
            await anyio.sleep(0.01)


def pid_exists(pid: int) -> bool:
    return not gone(pid) and pid != os.getpid()
