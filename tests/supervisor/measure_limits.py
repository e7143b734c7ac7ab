"""Measure how fast a memory limit acts: ``python tests/supervisor/measure_limits.py [N]``.

A job (or a grandchild it forks) allocates in 5 MiB steps, logging the time and the RSS
the supervisor sums before each step; the last moment it was below 100 MiB bounds the
crossing. The supervisor records when its monitor saw
the crossing and when the whole tree was gone.
Prints, per backend and interval, crossing->detected and crossing->tree gone (min, median,
max over N runs). Not a test: figures for the README.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).parent))

from supervisor_helpers import MiB, packed

from chancy.supervisor import ChildPool


async def measure(runs: int, interval: float, func: str) -> tuple[list[float], list[float]]:
    detect, gone = [], []
    async with ChildPool(1, monitor_interval=interval) as pool:
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as folder:
                marker = Path(folder) / "crossed"
                _job_id, job = packed(func, total_mib=600, marker=str(marker))
                outcome = await pool.run_job(job, memory_limit=100 * MiB)
                assert outcome.error is not None
                assert outcome.error.type == "MemoryLimitExceeded"
                rows = [line.split() for line in marker.read_text().splitlines()]
                below = [float(t) for t, rss in rows if int(rss) <= 100 * MiB]
                # The last moment seen below the limit: crossing happened within one 5 MiB
                # step (about a millisecond) after it, so latencies are slightly overstated.
                crossed = below[-1]
                assert outcome.limit_detected_at
                assert outcome.tree_gone_at
                detect.append(outcome.limit_detected_at - crossed)
                gone.append(outcome.tree_gone_at - crossed)
    return detect, gone


def fmt(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"min {ms[0]:6.1f} ms  median {statistics.median(ms):6.1f} ms  max {ms[-1]:6.1f} ms"


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    for func in ("allocate", "fork_and_allocate"):
        for backend in ("asyncio", "trio"):
            for interval in (0.05, 0.1):
                detect, gone = anyio.run(measure, runs, interval, func, backend=backend)
                print(f"{func}: {backend}, interval {interval * 1000:.0f} ms, {runs} runs")
                print(f"  crossing -> detected : {fmt(detect)}")
                print(f"  crossing -> tree gone: {fmt(gone)}")


if __name__ == "__main__":
    main()
