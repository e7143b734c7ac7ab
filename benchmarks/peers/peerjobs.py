"""The job bodies every queue runs, the same for all (importable by name: this folder is on the
PYTHONPATH of every driver, and of the process executors' children).

`noop` / `anoop` do nothing. `record` / `arecord` append "i time.time()" to the file named by
`PEER_BENCH_STARTS` (one line per job, flushed): when the job's body started, on the host's clock.
"""

from __future__ import annotations

import os
import time

_out = None


def noop() -> None:
    """Does nothing: what is measured is the queue, not the job."""


async def anoop() -> None:
    """Does nothing, as a coroutine."""


def record(i: int) -> None:
    global _out
    now = time.time()
    if _out is None:
        _out = open(os.environ["PEER_BENCH_STARTS"], "a", buffering=1)  # noqa: SIM115
    _out.write(f"{i} {now}\n")


async def arecord(i: int) -> None:
    record(i)
