"""Workflows against a real PostgreSQL, on both backends: validation, atomic push, steps
invisible to the claim until due, advancement in the transaction that finishes a step (every
path: the batcher's statement, cancel_job, recovery, retry_jobs), results, failure policy,
get/wait/list/retry/cancel, the sync twins and upstream's names."""

from __future__ import annotations

import dataclasses
import io
import logging
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from plugin_helpers import add_worker
from support import FAST, fetch

from chancy import Chancy, Job, Queue, QueuedJob
from chancy._sql import claim_query, update_jobs_query
from chancy.actors.batcher import batch_document
from chancy.errors import UnknownQueueError
from chancy.plugins.recovery import rescue_jobs
from chancy.plugins.workflow import (
    CircularDependencyError,
    DuplicateStepError,
    EmptyWorkflowError,
    InvalidDependencyError,
    Sequence,
    UnknownWorkflowError,
    Workflow,
    WorkflowError,
    WorkflowPlugin,
    WorkflowRef,
    cancel_workflow,
    get_workflow,
    list_workflows,
    push_workflow,
    push_workflow_ex,
    retry_workflow,
    step,
    sync_cancel_workflow,
    sync_get_workflow,
    sync_list_workflows,
    sync_push_workflow,
    sync_push_workflow_ex,
    sync_retry_workflow,
    sync_wait_for_workflow,
    wait_for_workflow,
)
from chancy.worker import Worker

pytestmark = pytest.mark.anyio
Q = "wf"


def j(func: str, **kwargs: Any) -> Job:
    return Job(func=f"wfjobs.{func}", queue=Q, kwargs=kwargs)


def lines(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
async def app(make_app) -> Chancy:
    chancy: Chancy = await make_app(plugins=[WorkflowPlugin()])
    await chancy.declare(
        Queue(Q, concurrency=4, executor=Chancy.Executor.Threaded, polling_interval=1)
    )
    return chancy


@pytest.fixture
async def worker(app: Chancy):
    """`await worker()`: an in-process worker of `app`, stopped after the test."""
    async with AsyncExitStack() as stack:

        async def start(**options: Any) -> Worker:
            w = Worker(app, **{**FAST, **options})
            await stack.enter_async_context(w)
            return w

        yield start


# -- the model --------------------------------------------------------------------------------


def test_validation_names_what_is_wrong() -> None:
    with pytest.raises(EmptyWorkflowError, match="'empty' has no steps"):
        Workflow("empty").validate()
    cyclic = Workflow("c").add("a", j("value"), ["c"]).add("b", j("value"), ["a"])
    cyclic.add("c", j("value"), ["b"])
    with pytest.raises(CircularDependencyError, match="a -> c -> b -> a"):
        cyclic.validate()
    with pytest.raises(CircularDependencyError, match="self -> self"):
        Workflow("s").add("self", j("value"), ["self"]).validate()
    with pytest.raises(InvalidDependencyError, match="step 'b' depends on unknown step 'x'"):
        Workflow("u").add("a", j("value")).add("b", j("value"), ["x"]).validate()
    with pytest.raises(DuplicateStepError, match="duplicate step names: 'a'"):
        Workflow("d").add("a", j("value")).add("a", j("value")).validate()
    with pytest.raises(WorkflowError, match="unique_key"):
        Workflow("k").add("a", j("value").with_unique_key("x")).validate()
    with pytest.raises(InvalidDependencyError, match="unknown step 'nope'"):
        Workflow("i").add("a", j("add"), inputs={"a": "nope"}).validate()
    for error in (CircularDependencyError, InvalidDependencyError, EmptyWorkflowError):
        assert issubclass(error, ValueError)
    with pytest.raises(WorkflowError, match="expected a Job"):
        Workflow("bad").add("a", "not a job")


def test_sugar_builds_chains_fan_outs_and_fan_ins() -> None:
    a, b, c, d = (step(name, j("value", x=1)) for name in "abcd")
    chain = Workflow("chain", a >> b >> c)
    assert {n: s.dependencies for n, s in chain} == {"a": [], "b": ["a"], "c": ["b"]}
    fan_in = Workflow("fan-in", [a, b, c] >> d)
    assert fan_in["d"].dependencies == ["a", "b", "c"]
    diamond = Workflow("diamond", a >> [b, c] >> d)
    assert {n: s.dependencies for n, s in diamond} == {
        "a": [],
        "b": ["a"],
        "c": ["a"],
        "d": ["b", "c"],
    }
    piped = Workflow("p", a >> step("e", j("add", b=1), inputs={"a": "a"}))
    assert piped["e"].dependencies == ["a"]
    assert piped["e"].inputs == {"a": "a"}
    seq = Sequence("s", [j("value"), j("value")]).workflow()
    assert {n: s.dependencies for n, s in seq} == {"step_0": [], "step_1": ["step_0"]}
    grouped = (
        Workflow("g")
        .add("setup", j("value"))
        .add_group([("x", j("value")), ("y", j("value"))], ["setup"])
    )
    assert grouped["y"].dependencies == ["setup"]
    out = io.StringIO()
    WorkflowPlugin.generate_dot(diamond, out)
    assert '"a" -> "b";' in out.getvalue()
    assert out.getvalue().startswith("digraph")


# -- push, claim, advancement -------------------------------------------------------------------


async def test_push_is_atomic_and_validated(make_app) -> None:
    app: Chancy = await make_app(plugins=[WorkflowPlugin()], strict_queues=True)
    await app.declare(Queue(Q))
    flow = Workflow("w").add("a", j("value")).add("b", Job(func="wfjobs.value", queue="nowhere"))
    with pytest.raises(UnknownQueueError):
        await push_workflow(app, flow)
    assert await fetch(app, "SELECT count(*) FROM {jobs}") == [(0,)]
    assert await list_workflows(app) == []
    with pytest.raises(CircularDependencyError):
        await push_workflow(app, Workflow("c").add("a", j("value"), ["a"]))
    once = Workflow("once").add("a", Job(func="wfjobs.value", queue=Q))
    await push_workflow(app, once)
    with pytest.raises(WorkflowError, match="was pushed already"):
        await push_workflow(app, once)
    assert await fetch(app, "SELECT count(*) FROM {jobs}") == [(1,)]


async def test_push_ex_rides_the_callers_transaction(app: Chancy, anyio_backend: str) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("*_ex takes psycopg's asyncio cursor")
    async with app.pool.connection() as conn:
        async with conn.transaction(force_rollback=True), conn.cursor() as cursor:
            ref = await push_workflow_ex(app, cursor, Workflow("x").add("a", j("value", x=1)))
            await cursor.execute(
                app.tables.q("SELECT count(*) FROM {steps}", steps=app.tables("workflow_steps"))
            )
            assert await cursor.fetchone() == (1,)
    assert await get_workflow(app, ref) is None
    async with app.pool.connection() as conn:
        async with conn.transaction(), conn.cursor() as cursor:
            ref = await push_workflow_ex(app, cursor, Workflow("x").add("a", j("value", x=1)))
    assert (await get_workflow(app, ref)) is not None


async def claim(app: Chancy, up_to: int = 100) -> list[str]:
    async with app.db.connection() as conn:
        rows = await conn.fetchall(
            claim_query(app.tables), {"queue": Q, "up_to": up_to, "taken_by": "me:1"}
        )
    return [row[0] for row in rows]


def document(job: QueuedJob, state: str, result: Any) -> str:
    """The batcher's own document for the end of `job`'s attempt 1."""
    ended = dataclasses.replace(
        job, state=QueuedJob.State(state), completed_at=datetime.now(UTC), result=result
    )
    return batch_document(SimpleNamespace(log=logging.getLogger("test")), [ended])  # type: ignore[arg-type]


async def finish(app: Chancy, job_id: str, state: str = "succeeded", result: Any = None) -> None:
    """Write a step's end with the batcher's own statement, as worker 'me:1'."""
    job = await app.get_job(job_id)
    assert job is not None
    async with app.db.connection() as conn:
        await conn.execute(
            update_jobs_query(app.tables),
            [document(job, state, result), "me:1", app.tables.channel, False],
        )


async def test_waiting_steps_are_invisible_to_the_claim_and_advance_at_once(app: Chancy) -> None:
    flow = Workflow("chain", step("a", j("value", x=1)) >> step("b", j("total")))
    ref = await push_workflow(app, flow)
    a, b = flow["a"].job_id, flow["b"].job_id
    assert a
    assert b
    waiting = await app.get_job(b)
    assert waiting is not None
    assert waiting.state == QueuedJob.State.PENDING
    assert waiting.meta["workflow"] == {"id": str(ref), "step": "b"}
    # Only the root is claimable, however often we look.
    assert await claim(app) == [a]
    assert await claim(app) == []
    assert (await get_workflow(app, ref)).state == Workflow.State.RUNNING  # type: ignore[union-attr]
    # The batcher's statement finishes `a`: `b` is due in that same transaction.
    async with app.db.connection() as conn, conn.transaction():
        job_a = await app.get_job(a)
        assert job_a is not None
        await conn.execute(
            update_jobs_query(app.tables),
            [document(job_a, "succeeded", 41), "me:1", app.tables.channel, False],
        )
        row = await conn.fetchone(
            app.tables.q("SELECT scheduled_at <= now(), meta FROM {jobs} WHERE id = %s"), (b,)
        )
        assert row is not None
        assert row[0] is True
        assert row[1]["workflow"]["results"] == {"a": 41}
    assert await claim(app) == [b]
    await finish(app, b, result=41)
    done = await get_workflow(app, ref)
    assert done is not None
    assert done.state == Workflow.State.COMPLETED
    assert (done.total_steps, done.unfinished_steps, done.failed_steps) == (2, 0, 0)
    assert done.completed_at is not None
    assert [s.status for _, s in done] == ["succeeded", "succeeded"]
    assert done["b"].result == 41


async def test_a_plain_job_is_untouched_by_the_triggers(app: Chancy) -> None:
    ref = await app.push(j("value", x=1))
    assert await claim(app) == [ref.identifier]
    await finish(app, ref.identifier, result=1)
    job = await app.get_job(ref)
    assert job is not None
    assert (job.state, job.result, job.meta) == (QueuedJob.State.SUCCEEDED, 1, {})
    inbox = app.tables("workflow_inbox")
    async with app.db.connection() as conn:
        assert await conn.fetchall(app.tables.q("SELECT * FROM {i}", i=inbox)) == []


# -- with a worker --------------------------------------------------------------------------------


async def test_chain_fan_in_and_results_flow(app: Chancy, worker) -> None:
    await worker()
    a, b = step("a", j("value", x=2)), step("b", j("value", x=3))
    total = step("total", j("total"))
    plus = step("plus", j("add", b=100), inputs={"a": "total"})
    ref = await push_workflow(app, Workflow("pipeline", [a, b] >> total >> plus))
    done = await wait_for_workflow(app, ref, timeout=30, interval=0.5)
    assert done.state == Workflow.State.COMPLETED
    assert {n: s.result for n, s in done} == {"a": 2, "b": 3, "total": 5, "plus": 105}
    assert all(s.state == QueuedJob.State.SUCCEEDED for _, s in done)
    # The steps ran in dependency order.
    started = {n: s.queued_job.started_at for n, s in done}  # type: ignore[union-attr]
    completed = {n: s.queued_job.completed_at for n, s in done}  # type: ignore[union-attr]
    assert started["total"] >= max(completed["a"], completed["b"])
    assert started["plus"] >= completed["total"]
    # A step's reference works with the job API.
    job = await app.wait_for_job(done["plus"].job_id, timeout=5)  # type: ignore[arg-type]
    assert job is not None
    assert job.result == 105


async def test_a_failed_step_fails_the_workflow_and_cancels_its_dependents(
    app: Chancy, worker, tmp_path: Path
) -> None:
    await worker()
    path = str(tmp_path / "runs")
    flow = Workflow("f")
    flow.add("bad", j("boom", path=path, name="bad"))
    flow.add("after", j("mark", path=path, name="after"), ["bad"])
    flow.add("last", j("mark", path=path, name="last"), ["after"])
    flow.add("other", j("mark", path=path, name="other"))
    ref = await push_workflow(app, flow)
    done = await wait_for_workflow(app, ref, timeout=30, interval=0.5)
    assert done.state == Workflow.State.FAILED
    assert {n: s.status for n, s in done} == {
        "bad": "failed",
        "after": "cancelled",
        "last": "cancelled",
        "other": done["other"].status,
    }
    after = await app.get_job(done["after"].job_id)  # type: ignore[arg-type]
    assert after is not None
    assert after.state == QueuedJob.State.FAILED
    assert "a step it depends on failed" in after.errors[-1]["traceback"]
    # The independent branch still runs to its end.
    other = await app.wait_for_job(done["other"].job_id, timeout=30)  # type: ignore[arg-type]
    assert other is not None
    assert other.state == QueuedJob.State.SUCCEEDED
    assert sorted(lines(tmp_path / "runs")) == ["bad", "other"]
    final = await get_workflow(app, ref)
    assert final is not None
    assert (final.unfinished_steps, final.failed_steps) == (0, 3)


async def test_continue_on_failure_runs_dependents_with_the_failure_visible(
    app: Chancy, worker
) -> None:
    await worker()
    flow = Workflow(
        "c",
        [step("ok", j("value", x=7)), step("bad", j("boom"))] >> step("see", j("seen")),
        continue_on_failure=True,
    )
    ref = await push_workflow(app, flow)
    done = await wait_for_workflow(app, ref, timeout=30, interval=0.5)
    assert done.state == Workflow.State.FAILED
    assert done["see"].state == QueuedJob.State.SUCCEEDED
    assert done["see"].result == {
        "results": {"ok": 7},
        "failed": ["bad"],
        "step": [str(ref), "see"],
    }


async def test_retry_workflow_reruns_failed_steps_and_keeps_succeeded_ones(
    app: Chancy, worker, tmp_path: Path
) -> None:
    await worker()
    path = str(tmp_path / "runs")
    flow = Workflow("r")
    flow.add("kept", j("mark", path=path, name="kept"))
    flow.add("flaky", j("fail_once", path=path, name="flaky"), ["kept"])
    flow.add("next", j("mark", path=path, name="next"), ["flaky"])
    flow.add("end", j("mark", path=path, name="end"), ["next", "kept"])
    ref = await push_workflow(app, flow)
    failed = await wait_for_workflow(app, ref, timeout=30, interval=0.5)
    assert failed.state == Workflow.State.FAILED
    assert [failed[n].status for n in ("next", "end")] == ["cancelled", "cancelled"]
    again = await retry_workflow(app, ref)
    assert again == [failed["flaky"].job_id]
    done = await wait_for_workflow(app, ref, timeout=30, interval=0.5)
    assert done.state == Workflow.State.COMPLETED, {n: s.status for n, s in done}
    assert lines(tmp_path / "runs") == ["kept", "flaky", "flaky", "next", "end"]
    assert (done.unfinished_steps, done.failed_steps) == (0, 0)
    with pytest.raises(UnknownWorkflowError):
        await retry_workflow(app, WorkflowRef("00000000-0000-7000-8000-000000000000"))


async def test_retry_jobs_of_a_failed_step_resumes_its_workflow(
    app: Chancy, worker, tmp_path: Path
) -> None:
    await worker()
    path = str(tmp_path / "runs")
    flow = Workflow(
        "o",
        step("flaky", j("fail_once", path=path, name="flaky"))
        >> step("b", j("mark", path=path, name="b")),
    )
    ref = await push_workflow(app, flow)
    assert (await wait_for_workflow(app, ref, timeout=30)).state == Workflow.State.FAILED
    result = await app.retry_jobs([flow["flaky"].job_id])  # type: ignore[list-item]
    assert result.done == [flow["flaky"].job_id]
    done = await wait_for_workflow(app, ref, timeout=30, interval=0.5)
    assert done.state == Workflow.State.COMPLETED
    assert lines(tmp_path / "runs") == ["flaky", "flaky", "b"]


async def test_cancel_job_of_a_waiting_step_and_cancel_workflow(app: Chancy) -> None:
    flow = Workflow(
        "x", step("a", j("value", x=1)) >> step("b", j("value", x=2)) >> step("c", j("value", x=3))
    )
    ref = await push_workflow(app, flow)
    await app.cancel_job(flow["b"].job_id)  # type: ignore[arg-type]
    got = await get_workflow(app, ref)
    assert got is not None
    assert got.state == Workflow.State.FAILED
    assert [got[n].status for n in "abc"] == ["ready", "failed", "cancelled"]
    # cancel_workflow: the rest goes too.
    other = Workflow("y", step("a", j("value", x=1)) >> step("b", j("value", x=2)))
    other_ref = await push_workflow(app, other)
    acted = await cancel_workflow(app, other_ref)
    assert sorted(acted) == sorted([other["a"].job_id, other["b"].job_id])
    got = await get_workflow(app, other_ref)
    assert got is not None
    assert got.state == Workflow.State.FAILED
    assert got.unfinished_steps == 0
    assert all(s.state == QueuedJob.State.FAILED for _, s in got)
    with pytest.raises(UnknownWorkflowError):
        await cancel_workflow(app, "00000000-0000-7000-8000-000000000000")


async def test_rescue_of_a_dead_workers_step_advances_the_workflow(app: Chancy) -> None:
    flow = Workflow("z")
    flow.add("lost", j("value", x=1).with_max_attempts(1))
    flow.add("after", j("value", x=2), ["lost"])
    ref = await push_workflow(app, flow)
    await add_worker(app, "dead", "d1", alive=False)
    assert await claim(app) == [flow["lost"].job_id]
    async with app.db.connection() as conn:
        await conn.execute(
            app.tables.q(
                "UPDATE {jobs} SET taken_by = 'dead:d1', started_at = now() - interval '1 hour'"
                " WHERE id = %s"
            ),
            (flow["lost"].job_id,),
        )
    rescued = await rescue_jobs(app, grace=0)
    assert [(r[0], r[2]) for r in rescued] == [(flow["lost"].job_id, "failed")]
    got = await get_workflow(app, ref)
    assert got is not None
    assert got.state == Workflow.State.FAILED
    assert got["after"].status == "cancelled"


async def test_get_wait_list_and_errors(app: Chancy) -> None:
    first = await push_workflow(app, Workflow("one").add("a", j("value")))
    second = await push_workflow(app, Workflow("two").add("a", j("value")))
    listed = await list_workflows(app)
    assert [w.id for w in listed] == [str(second), str(first)]
    assert listed[0].total_steps == 1
    assert listed[0].steps == {}
    assert [w.name for w in await list_workflows(app, state="pending")] == ["two", "one"]
    assert await list_workflows(app, state=Workflow.State.COMPLETED) == []
    assert [w.name for w in await list_workflows(app, name="one")] == ["one"]
    assert [w.name for w in await list_workflows(app, after=second)] == ["one"]
    with pytest.raises(ValueError, match="limit"):
        await list_workflows(app, limit=0)
    assert await get_workflow(app, "00000000-0000-7000-8000-000000000000") is None
    with pytest.raises(TimeoutError):
        await wait_for_workflow(app, first, timeout=0.3, interval=0.1)
    with pytest.raises(UnknownWorkflowError):
        await wait_for_workflow(app, "00000000-0000-7000-8000-000000000000", timeout=1)
    with pytest.raises(ValueError, match="not a workflow id"):
        await get_workflow(app, "nope")


async def test_upstream_names(app: Chancy, worker) -> None:
    await worker()
    flow = Workflow("up").add("a", j("value", x=1)).add("b", j("value", x=2), ["a"])
    workflow_id = await WorkflowPlugin.push(app, flow)
    assert isinstance(workflow_id, str)
    done = await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=30, interval=0.5)
    assert done.is_complete
    assert done.state == Workflow.State.COMPLETED
    fetched = await WorkflowPlugin.fetch_workflow(app, workflow_id)
    assert fetched is not None
    assert fetched["b"].result == 2
    seq_id = await Sequence("seq", [j("value", x=1), j("value", x=2)]).push(app)
    seq = await WorkflowPlugin.wait_for_workflow(app, seq_id, timeout=30, interval=0.5)
    assert [s.result for _, s in seq] == [1, 2]
    assert [w.id for w in await WorkflowPlugin.fetch_workflows(app)] == [seq_id, workflow_id]


async def test_migrating_down_removes_tables_and_triggers(app: Chancy) -> None:
    await push_workflow(app, Workflow("w").add("a", j("value")))
    await app.migrate(to_version=0)
    rows = await fetch(
        app,
        "SELECT count(*) FROM pg_trigger WHERE tgname LIKE %s",
        (app.prefix.replace("_", "\\_") + "workflow%",),
    )
    assert rows == [(0,)]
    async with app.db.connection() as conn:
        row = await conn.fetchone("SELECT to_regclass(%s)", (app.prefix + "workflows",))
    assert row == (None,)


def test_sync_twins(dsn: str, prefix: str, tmp_path: Path) -> None:
    app = Chancy(dsn, prefix=prefix, plugins=[WorkflowPlugin()], poll_reconnect_timeout=10)
    with app:
        app.sync_migrate()
        app.sync_declare(Queue(Q, concurrency=2, executor=Chancy.Executor.Threaded))
        flow = Workflow("s", step("a", j("value", x=1)) >> step("b", j("value", x=2)))
        ref = sync_push_workflow(app, flow)
        got = sync_get_workflow(app, ref)
        assert got is not None
        assert [s.status for _, s in got] == ["ready", "waiting"]
        assert [w.id for w in sync_list_workflows(app)] == [str(ref)]
        assert sync_retry_workflow(app, ref) == []

        async def run_worker() -> None:
            async with app, Worker(app, **FAST):
                with anyio.fail_after(30):
                    while True:
                        flow_now = await get_workflow(app, ref)
                        if flow_now is not None and flow_now.is_complete:
                            return
                        await anyio.sleep(0.1)

        anyio.run(run_worker)
        done = sync_wait_for_workflow(app, ref, timeout=10)
        assert done.state == Workflow.State.COMPLETED
        with app.sync_pool.connection() as conn:
            with conn.transaction(force_rollback=True), conn.cursor() as cursor:
                gone = sync_push_workflow_ex(app, cursor, Workflow("ex").add("a", j("value")))
            with conn.transaction(), conn.cursor() as cursor:
                kept = sync_push_workflow_ex(app, cursor, Workflow("ex").add("a", j("value")))
        assert sync_get_workflow(app, gone) is None
        assert sync_get_workflow(app, kept) is not None
        other = sync_push_workflow(app, Workflow("t").add("a", j("value")))
        assert len(sync_cancel_workflow(app, other)) == 1
        assert sync_wait_for_workflow(app, other, timeout=10).state == Workflow.State.FAILED


async def test_a_users_own_workflow_key_in_meta_is_not_a_step(app: Chancy) -> None:
    for meta in ({"workflow": "nightly"}, {"workflow": {"id": "x"}}, {"workflow": [1]}):
        ref = await app.push(j("value", x=1).with_meta(meta))
        assert await claim(app) == [ref.identifier]
        await finish(app, ref.identifier, result=1)
        job = await app.get_job(ref)
        assert job is not None
        assert job.state == QueuedJob.State.SUCCEEDED


async def test_purging_an_unfinished_step_fails_its_workflow(app: Chancy) -> None:
    flow = Workflow("p", step("a", j("value", x=1)) >> step("b", j("value", x=2)))
    ref = await push_workflow(app, flow)
    result = await app.purge_jobs([flow["a"].job_id])  # type: ignore[list-item]
    assert result.done == [flow["a"].job_id]
    got = await get_workflow(app, ref)
    assert got is not None
    assert got.state == Workflow.State.FAILED
    assert [got[n].status for n in "ab"] == ["failed", "cancelled"]
    assert got.unfinished_steps == 0
    # The pruner's deletes of finished jobs change nothing.
    done = await push_workflow(app, Workflow("q").add("a", j("value", x=1)))
    assert await claim(app) == [(await get_workflow(app, done))["a"].job_id]  # type: ignore[index]
    await finish(app, (await get_workflow(app, done))["a"].job_id, result=1)  # type: ignore[arg-type,index]
    await fetch(app, "DELETE FROM {jobs} WHERE state = 'succeeded' RETURNING id")
    after = await get_workflow(app, done)
    assert after is not None
    assert after.state == Workflow.State.COMPLETED


async def test_a_wide_fan_out_fails_retries_and_completes_by_hand(app: Chancy) -> None:
    flow = Workflow("wide").add("root", j("value", x=0))
    middle = [f"m{i}" for i in range(50)]
    for name in middle:
        flow.add(name, j("value", x=1), ["root"])
    flow.add("sink", j("total"), middle)
    ref = await push_workflow(app, flow)
    root = flow["root"].job_id
    assert await claim(app) == [root]
    await finish(app, root, "failed")  # type: ignore[arg-type]
    got = await get_workflow(app, ref)
    assert got is not None
    assert got.state == Workflow.State.FAILED
    assert {s.status for n, s in got if n != "root"} == {"cancelled"}
    assert (got.unfinished_steps, got.failed_steps) == (0, 52)
    assert await retry_workflow(app, ref) == [root]
    got = await get_workflow(app, ref)
    assert got is not None
    assert (got.state, got.unfinished_steps, got.failed_steps) == (Workflow.State.RUNNING, 52, 0)
    assert got["root"].status == "ready"
    assert {s.status for n, s in got if n != "root"} == {"waiting"}
    assert await claim(app) == [root]
    await finish(app, root, result=0)  # type: ignore[arg-type]
    claimed = await claim(app)
    assert sorted(claimed) == sorted(flow[n].job_id for n in middle)  # type: ignore[type-var]
    for job_id in claimed:
        await finish(app, job_id, result=1)
    assert await claim(app) == [flow["sink"].job_id]
    sink = await app.get_job(flow["sink"].job_id)  # type: ignore[arg-type]
    assert sink is not None
    assert sum(sink.meta["workflow"]["results"].values()) == 50
    await finish(app, sink.id, result=50)
    done = await get_workflow(app, ref)
    assert done is not None
    assert (done.state, done.unfinished_steps, done.failed_steps) == (
        Workflow.State.COMPLETED,
        0,
        0,
    )
