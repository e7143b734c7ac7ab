"""Cron with three worker processes: every tick of a schedule fires exactly once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from plugin_helpers import count_jobs, eventually, live_workers

from chancy import Chancy, Job, Queue
from chancy.plugins.cron import Cron, schedule, unschedule

pytestmark = pytest.mark.anyio


async def test_a_schedule_fires_once_per_tick_with_three_workers(
    procs, make_app, tmp_path: Path
) -> None:
    app: Chancy = await make_app(plugins=[Cron()])
    await app.declare(Queue("cron", concurrency=4, executor=Chancy.Executor.Threaded))
    marker = tmp_path / "runs"
    plugins = {"cron": {"poll_interval": 0.5}}
    for name in ("c1", "c2", "c3"):
        procs.start(name, plugins, heartbeat_poll_interval=1)

    async def three() -> bool:
        return len(await live_workers(app)) == 3

    await eventually(three, timeout=20)
    job = Job(func="pjobs.record", queue="cron", kwargs={"path": str(marker)})
    started = datetime.now(UTC)
    await schedule(app, "* * * * * *", job, name="every-second")
    await anyio.sleep(3.3)
    await unschedule(app, "every-second")
    ended = datetime.now(UTC)

    async with app.db.connection() as conn:
        rows = await conn.fetchall(
            app.tables.q("SELECT unique_key, scheduled_at FROM {jobs} ORDER BY scheduled_at")
        )
    keys = [key for key, _ in rows]
    ticks = [at for _, at in rows]
    assert len(keys) == len(set(keys)), f"a tick fired twice: {keys}"
    assert all(key.startswith("cron:every-second:") for key in keys)
    assert all(t.microsecond == 0 and started <= t <= ended for t in ticks)
    assert 2 <= len(ticks) <= 4, ticks
    # Every job ran once: as many runs as jobs once they finished.
    await eventually(lambda: _all_done(app), timeout=15)
    assert len(marker.read_text().split()) == len(ticks)


async def _all_done(app: Chancy) -> bool:
    return await count_jobs(app, "state <> 'succeeded'") == 0
