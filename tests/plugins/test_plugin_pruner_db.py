"""Pruning against a real database: only old finished jobs go, in bounded batches."""

from __future__ import annotations

import pytest
from plugin_helpers import add_job, count_jobs, job_row

from chancy.plugin import Plugin
from chancy.plugins.leadership import Leadership
from chancy.plugins.pruner import Pruner, prune_batch

pytestmark = pytest.mark.anyio


class Counting(Plugin):
    identifier = "counting"

    def __init__(self) -> None:
        self.calls = 0

    async def cleanup(self, chancy) -> int:
        self.calls += 1
        return 0


async def test_prunes_only_old_finished_jobs(make_app) -> None:
    counting = Counting()
    pruner = Pruner(maximum_age=3600, batch_size=2)
    app = await make_app(plugins=[Leadership(), pruner, counting])
    old = 7200
    doomed = [
        await add_job(app, state="succeeded", completed_ago=old),
        await add_job(app, state="succeeded", completed_ago=old),
        await add_job(app, state="failed", completed_ago=old),
        await add_job(app, state="failed", completed_ago=old, queue="other"),
        await add_job(app, state="succeeded", completed_ago=old),
    ]
    # Unfinished jobs are never touched, even with an old completed_at (a retried job).
    kept = [
        await add_job(app, state="pending", completed_ago=old),
        await add_job(app, state="running", taken_by="w:1", completed_ago=old),
        await add_job(app, state="retrying", completed_ago=old),
        await add_job(app, state="succeeded", completed_ago=60),
        await add_job(app, state="failed", completed_ago=60),
    ]
    assert await prune_batch(app, maximum_age=3600, batch_size=2, queue="other") == 1
    assert await pruner.prune(app) == 4
    assert counting.calls == 1
    for job_id in doomed:
        assert await job_row(app, job_id) is None
    for job_id in kept:
        assert await job_row(app, job_id) is not None
    assert await count_jobs(app) == len(kept)
    # With age zero, finished jobs go at once, unfinished ones still stay.
    assert await prune_batch(app, maximum_age=0, batch_size=100) == 2
    assert await count_jobs(app, "state IN ('pending', 'running', 'retrying')") == 3
    assert await count_jobs(app) == 3
