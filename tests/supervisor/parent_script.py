"""A tiny supervisor for the parent-death test: ``parent_script.py BACKEND FOLDER JOB``.

Starts a pool of two children, runs ``supervisor_jobs.JOB(pid_file=FOLDER/busy)`` (a job
that never ends) on one of them, writes both pids to FOLDER/children, and waits to be
killed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).parent))

from supervisor_helpers import packed

from chancy.supervisor import ChildPool


async def main(folder: Path, func: str) -> None:
    async with ChildPool(2) as pool, anyio.create_task_group() as tg:
        _job_id, job = packed(func, pid_file=str(folder / "busy"))
        tg.start_soon(pool.run_job, job)
        while not (folder / "busy").exists() or len(pool.pids) < 2:
            await anyio.sleep(0.01)
        (folder / "children").write_text(" ".join(map(str, pool.pids)))
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[2]), sys.argv[3], backend=sys.argv[1])
