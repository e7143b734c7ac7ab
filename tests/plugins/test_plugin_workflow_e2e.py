"""Workflows with real worker processes: racing workers run every step exactly once, a step
of a SIGKILLed worker is rerun by recovery and the workflow still completes, and a big
workflow pushed while workers run is never seen half-pushed."""

from __future__ import annotations

import collections
from pathlib import Path

import anyio
import pytest
from plugin_helpers import eventually, live_workers

from chancy import Chancy, Job, Queue
from chancy.plugins.workflow import (
    Workflow,
    WorkflowPlugin,
    get_workflow,
    push_workflow,
    step,
    wait_for_workflow,
)

pytestmark = pytest.mark.anyio

Q = "wf"
FAST = {"heartbeat_poll_interval": 0.3, "heartbeat_timeout": 2}
PLUGINS = {
    "leadership": {"poll_interval": 0.3, "timeout": 2},
    "recovery": {"poll_interval": 0.3, "grace": 0},
    "workflow": {},
}


def runs(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def mark(path: Path, name: str, **options: object) -> Job:
    return Job(func="wfjobs.mark", queue=Q, kwargs={"path": str(path), "name": name}, **options)  # type: ignore[arg-type]


async def test_four_workers_racing_on_a_wide_dag_run_every_step_once(
    procs, make_app, tmp_path: Path
) -> None:
    app: Chancy = await make_app(plugins=[WorkflowPlugin()])
    await app.declare(Queue(Q, concurrency=4, executor=Chancy.Executor.Threaded))
    path = tmp_path / "runs"
    for n in range(4):
        procs.start(f"w{n}", PLUGINS, **FAST)
    await eventually(lambda: _count_live(app, 4), timeout=30)
    flow = Workflow("wide")
    flow.add("root", mark(path, "root"))
    first = [f"a{i}" for i in range(120)]
    second = [f"b{i}" for i in range(120)]
    for name in first:
        flow.add(name, mark(path, name), ["root"])
    for i, name in enumerate(second):  # each waits for two of the first layer
        flow.add(name, mark(path, name), [first[i], first[(i + 1) % len(first)]])
    flow.add("sink", mark(path, "sink"), second)
    ref = await push_workflow(app, flow)
    done = await wait_for_workflow(app, ref, timeout=120, interval=0.5)
    assert done.state == Workflow.State.COMPLETED
    counts = collections.Counter(runs(path))
    assert len(counts) == len(flow)
    assert set(counts.values()) == {1}, [n for n, c in counts.items() if c != 1]
    order = runs(path)
    assert order[0] == "root"
    assert order[-1] == "sink"
    for i, name in enumerate(second):
        assert order.index(name) > order.index(first[i])
        assert order.index(name) > order.index(first[(i + 1) % len(first)])
    # Several workers took part.
    pids = {line.split()[1] for line in path.read_text().splitlines()}
    assert len(pids) > 1


async def test_a_step_of_a_killed_worker_is_rerun_and_the_workflow_completes(
    procs, make_app, tmp_path: Path
) -> None:
    app: Chancy = await make_app(plugins=[WorkflowPlugin()])
    await app.declare(Queue(Q, concurrency=2, executor=Chancy.Executor.Threaded))
    path = tmp_path / "runs"
    procs.start("doomed", PLUGINS, **FAST)
    await eventually(lambda: live_workers(app), timeout=30)
    slow = Job(
        func="wfjobs.slow_first",
        queue=Q,
        kwargs={"path": str(path), "name": "slow"},
        max_attempts=3,
    )
    flow = Workflow(
        "k",
        step("first", mark(path, "first"))
        >> step("slow", slow)
        >> step("last", mark(path, "last")),
    )
    ref = await push_workflow(app, flow)
    await eventually(lambda: runs(path) == ["first", "slow"], timeout=30)
    procs.start("survivor", PLUGINS, **FAST)
    await eventually(lambda: _has(app, "survivor"), timeout=30)
    procs.kill("doomed")
    done = await wait_for_workflow(app, ref, timeout=60, interval=0.5)
    assert done.state == Workflow.State.COMPLETED
    assert runs(path) == ["first", "slow", "slow", "last"]
    job = done["slow"].queued_job
    assert job is not None
    assert job.attempts == 2
    assert "stopped heartbeating" in job.errors[0]["traceback"]


async def test_a_big_workflow_pushed_while_workers_run_is_never_seen_half_pushed(
    procs, make_app, tmp_path: Path
) -> None:
    app: Chancy = await make_app(plugins=[WorkflowPlugin()])
    await app.declare(Queue(Q, concurrency=8, executor=Chancy.Executor.Threaded))
    for n in range(2):
        procs.start(f"w{n}", PLUGINS, **FAST)
    await eventually(lambda: _count_live(app, 2), timeout=30)
    # Keep the workers busy with plain jobs meanwhile.
    async for _ in app.push_many([Job(func="wfjobs.value", queue=Q, kwargs={"x": 1})] * 300):
        pass
    flow = Workflow("big").add("root", Job(func="wfjobs.value", queue=Q, kwargs={"x": 0}))
    for i in range(999):
        flow.add(f"s{i}", Job(func="wfjobs.value", queue=Q, kwargs={"x": i}), ["root"])
    seen: list[tuple[int, int, int]] = []
    pushed = anyio.Event()
    steps = app.tables("workflow_steps")
    flows = app.tables("workflows")

    async def watch() -> None:
        async with app.db.connection() as conn:
            while not pushed.is_set():
                row = await conn.fetchone(
                    app.tables.q(
                        "SELECT (SELECT count(*) FROM {jobs} WHERE meta->'workflow'->>'id' = %(id)s),"
                        " (SELECT count(*) FROM {steps} WHERE workflow_id = %(id)s::uuid),"
                        " (SELECT count(*) FROM {flows} WHERE id = %(id)s::uuid)",
                        steps=steps,
                        flows=flows,
                    ),
                    {"id": flow.id},
                )
                assert row is not None
                seen.append((row[0], row[1], row[2]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await anyio.sleep(0.05)
        ref = await push_workflow(app, flow)
        pushed.set()
    assert seen, "the watcher never looked"
    assert set(seen) <= {(0, 0, 0), (1000, 1000, 1)}, sorted(set(seen))[:5]
    done = await wait_for_workflow(app, ref, timeout=120, interval=0.5)
    assert done.state == Workflow.State.COMPLETED
    assert [s.result for _, s in done] == [0, *range(999)]
    assert (await get_workflow(app, ref)).unfinished_steps == 0  # type: ignore[union-attr]


async def _count_live(app: Chancy, n: int) -> bool:
    return len(await live_workers(app)) >= n


async def _has(app: Chancy, worker_id: str) -> bool:
    return worker_id in await live_workers(app)


async def test_several_workflows_finishing_at_once_on_three_workers_all_complete(
    procs, make_app, tmp_path: Path
) -> None:
    app: Chancy = await make_app(plugins=[WorkflowPlugin()])
    await app.declare(Queue(Q, concurrency=6, executor=Chancy.Executor.Threaded))
    path = tmp_path / "runs"
    for n in range(3):
        procs.start(f"w{n}", PLUGINS, **FAST)
    await eventually(lambda: _count_live(app, 3), timeout=30)
    refs = []
    for k in range(5):  # the batches of every worker mix steps of every workflow
        flow = Workflow(f"diamonds-{k}")
        flow.add("top", mark(path, f"{k}.top"))
        middle = [f"m{i}" for i in range(40)]
        for name in middle:
            flow.add(name, mark(path, f"{k}.{name}"), ["top"])
        flow.add("bottom", mark(path, f"{k}.bottom"), middle)
        refs.append(await push_workflow(app, flow))
    for ref in refs:
        done = await wait_for_workflow(app, ref, timeout=120, interval=0.5)
        assert done.state == Workflow.State.COMPLETED
    counts = collections.Counter(runs(path))
    assert len(counts) == 5 * 42
    assert set(counts.values()) == {1}
