"""A tiny supervisor for the parent-death test: ``parent_script.py BACKEND FOLDER JOB [METHOD]``.

Starts a pool of two children (started by METHOD, default the pool's), runs
``supervisor_jobs.JOB(pid_file=FOLDER/busy)`` (a job that never ends) on one of them, writes
both pids to FOLDER/children (and the fork server's to FOLDER/forkserver, if there is one),
and waits to be killed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).parent))

from supervisor_helpers import packed

from chancy.supervisor import ChildPool


async def main(folder: Path, func: str, method: str | None) -> None:
    async with ChildPool(2, start_method=method) as pool, anyio.create_task_group() as tg:
        _job_id, job = packed(func, pid_file=str(folder / "busy"))
        tg.start_soon(pool.run_job, job)
        busy = folder / "busy"
        while not (busy.exists() and busy.read_text()) or len(pool.pids) < 2:
            await anyio.sleep(0.01)
        if pool._forkserver is not None and pool._forkserver.pid is not None:
            (folder / "forkserver").write_text(str(pool._forkserver.pid))
        (folder / "children").write_text(" ".join(map(str, pool.pids)))
        await anyio.sleep_forever()


if __name__ == "__main__":
    method = sys.argv[4] if len(sys.argv) > 4 else None
    anyio.run(main, Path(sys.argv[2]), sys.argv[3], method, backend=sys.argv[1])
