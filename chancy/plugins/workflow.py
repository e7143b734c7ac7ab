"""Workflows: jobs that wait for other jobs, advanced in the transaction that finishes a step.

A workflow is a named set of steps, each a `Job` with a step name and the names of the steps
it depends on; it is pushed in one transaction, every step a job from then on (so `get_job` and
`wait_for_job` work on a step's reference). A step runs once every step it depends on has
succeeded: the statement that writes a step's final state also makes its ready dependents due
(PostgreSQL triggers this plugin's migration installs; see `chancy.plugins._workflow_sql`), so
progress needs no polling and is exactly once however many workers run. A failed step (after
its retries) fails the workflow and cancels what depends on it, unless the workflow was made
with ``continue_on_failure=True``: then its dependents run with the failure visible.

::

    from chancy.plugins.workflow import Workflow, WorkflowPlugin, push_workflow, step

    chancy = Chancy(dsn, plugins=[WorkflowPlugin()])
    flow = Workflow("etl", step("extract", extract.job) >> step("load", load.job))
    ref = await push_workflow(chancy, flow)
    done = await wait_for_workflow(chancy, ref, timeout=60)

A step receives what its dependencies returned: `dependency_results(job)` (with a keyword-only
``job: QueuedJob`` parameter) gives ``{step name: result}``, and a step added with
``inputs={"rows": "extract"}`` gets the result of step ``extract`` as its keyword argument
``rows``. The names of upstream Chancy's workflow plugin work too: `Workflow.add`,
`Workflow.add_group`, `Sequence`, `WorkflowPlugin.push`, `WorkflowPlugin.fetch_workflow`,
`WorkflowPlugin.wait_for_workflow`, `WorkflowPlugin.generate_dot`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import json
import math
import time
import uuid
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import psycopg
from psycopg import sql

from chancy._blocking import BlockingConn, BlockingCursorConn, blocking_sleep, run_blocking
from chancy._db import Conn, CursorConn, dumps
from chancy._sql import read_job, text_job_columns
from chancy.errors import ChancyError
from chancy.job import Job, QueuedJob, Reference, uuid7
from chancy.migrations import Migration
from chancy.plugin import Plugin, check_seconds
from chancy.plugins import _workflow_sql as wsql

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable, Iterator
    from datetime import datetime

    from psycopg import AsyncCursor, Cursor

    from chancy.app import Chancy


# -- errors ------------------------------------------------------------------------------------


class WorkflowError(ChancyError, ValueError):
    """A workflow that cannot be pushed; the message names the steps at fault."""


class CircularDependencyError(WorkflowError):
    """The steps' dependencies form a cycle (the message shows it)."""


class InvalidDependencyError(WorkflowError):
    """A step depends on (or takes an input from) a step that is not in the workflow."""


class EmptyWorkflowError(WorkflowError):
    """A workflow without steps."""


class DuplicateStepError(WorkflowError):
    """Two steps of one workflow have the same name."""


class UnknownWorkflowError(ChancyError, KeyError):
    """No workflow has this id (never pushed, or pruned)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown workflow"


# -- the model ---------------------------------------------------------------------------------


def _as_job(job: Job | Any, where: str) -> Job:
    found = job if isinstance(job, Job) else getattr(job, "job", None)
    if not isinstance(found, Job):
        raise WorkflowError(f"{where}: expected a Job or an @job function, got {job!r}")
    return found


@dataclasses.dataclass
class WorkflowStep:
    """One step: its job, the steps it depends on and, once pushed, its job's id and state."""

    #: The job run when every dependency has succeeded.
    job: Job
    #: The step's name, unique in its workflow.
    step_id: str
    #: Names of the steps this one waits for.
    dependencies: list[str] = dataclasses.field(default_factory=list)
    #: `{keyword argument: step name}`: arguments filled from those steps' results.
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The state of the step's job (PENDING while it waits for its dependencies).
    state: QueuedJob.State | None = QueuedJob.State.PENDING
    #: The id of the step's job (a `Reference` for `get_job`/`wait_for_job`), once pushed.
    job_id: str | None = None
    #: What the step's job returned (None until it succeeded).
    result: Any = None
    #: The step as the workflow sees it: waiting, ready, succeeded, failed or cancelled.
    status: str | None = None
    #: The step's job as stored (None before the push, or when the job row was deleted).
    queued_job: QueuedJob | None = None

    @property
    def name(self) -> str:
        return self.step_id

    @property
    def reference(self) -> Reference | None:
        """The step's job reference, once pushed."""
        return Reference(self.job_id) if self.job_id else None


class Workflow:
    """A named set of steps with dependencies, pushed as a whole (`push_workflow`).

    Build it with `add`/`add_group`, or from the `>>` sugar of `step`: ``Workflow("etl",
    step("a", a) >> step("b", b))``. With `continue_on_failure`, a failed step's dependents
    still run (seeing the failure in `failed_dependencies`) and the workflow ends FAILED once
    every step finished; without it (the default), a failed step fails the workflow at once
    and cancels every step that depends on it, directly or not.
    """

    class State(enum.Enum):
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    def __init__(
        self,
        name: str,
        flow: Step | Flow | Iterable[Step | Flow] | None = None,
        *,
        continue_on_failure: bool = False,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise WorkflowError("Workflow: expected a non-empty name")
        self.name = name
        self.continue_on_failure = bool(continue_on_failure)
        self.steps: dict[str, WorkflowStep] = {}
        self.state = Workflow.State.PENDING
        #: The workflow's id (time-ordered, so id order is push order).
        self.id: str = str(uuid7())
        self.created_at: datetime | None = None
        self.updated_at: datetime | None = None
        self.completed_at: datetime | None = None
        #: Counters as stored (set when read back from the database).
        self.total_steps = 0
        self.unfinished_steps = 0
        self.failed_steps = 0
        self._duplicates: list[str] = []
        if flow is not None:
            self.add_flow(flow)

    def add(
        self,
        step_id: str,
        job: Job | Any,
        dependencies: list[str] | None = None,
        *,
        inputs: dict[str, str] | None = None,
    ) -> Workflow:
        """Add the step `step_id` running `job` once every step of `dependencies` succeeded.

        `inputs` maps keyword arguments of the job to steps whose result fills them (each
        such step is a dependency, added to `dependencies` if missing).
        """
        if not isinstance(step_id, str) or not step_id:
            raise WorkflowError(f"step name: expected a non-empty string, got {step_id!r}")
        found = _as_job(job, f"step {step_id!r}")
        if isinstance(dependencies, str):
            raise WorkflowError(f"step {step_id!r}: dependencies must be a list of step names")
        deps = list(dependencies or [])
        given = dict(inputs or {})
        for key, source in given.items():
            if not isinstance(key, str) or not isinstance(source, str):
                raise WorkflowError(f"step {step_id!r}: inputs maps argument names to step names")
            if source not in deps:
                deps.append(source)
        if step_id in self.steps:
            self._duplicates.append(step_id)
        self.steps[step_id] = WorkflowStep(
            job=found, step_id=step_id, dependencies=deps, inputs=given
        )
        return self

    def add_group(
        self,
        jobs: list[tuple[str, Job | Any]],
        dependencies: list[str] | None = None,
    ) -> Workflow:
        """Add several steps that all depend on the same `dependencies`."""
        for step_id, job in jobs:
            self.add(step_id, job, dependencies)
        return self

    def add_flow(self, flow: Step | Flow | Iterable[Step | Flow]) -> Workflow:
        """Add the steps of a `>>` expression (or of several)."""
        graph = _as_flow(flow)
        for node in graph.nodes:
            deps = list(dict.fromkeys([*graph.edges.get(node.name, []), *node.inputs.values()]))
            self.add(node.name, node.job, deps, inputs=node.inputs)
        return self

    def __repr__(self) -> str:
        return f"<Workflow({self.name!r}, {self.state!r})>"

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[tuple[str, WorkflowStep]]:
        return iter(self.steps.items())

    def __getitem__(self, key: str) -> WorkflowStep:
        return self.steps[key]

    def __delitem__(self, key: str) -> None:
        del self.steps[key]

    @property
    def is_complete(self) -> bool:
        """Whether the workflow ended (COMPLETED or FAILED)."""
        return self.state in (Workflow.State.COMPLETED, Workflow.State.FAILED)

    @property
    def is_running(self) -> bool:
        return self.state == Workflow.State.RUNNING

    @property
    def reference(self) -> WorkflowRef:
        return WorkflowRef(self.id)

    @property
    def steps_by_state(self) -> dict[QueuedJob.State | None, list[WorkflowStep]]:
        by_state: dict[QueuedJob.State | None, list[WorkflowStep]] = {}
        for one in self.steps.values():
            by_state.setdefault(one.state, []).append(one)
        return by_state

    def validate(self) -> None:
        """Refuse an empty workflow, duplicate step names, unknown dependencies and cycles
        (each with an error naming them)."""
        if not self.steps:
            raise EmptyWorkflowError(f"workflow {self.name!r} has no steps")
        if self._duplicates:
            dups = ", ".join(repr(d) for d in dict.fromkeys(self._duplicates))
            raise DuplicateStepError(f"workflow {self.name!r}: duplicate step names: {dups}")
        for name, one in self.steps.items():
            if len(set(one.dependencies)) != len(one.dependencies):
                raise DuplicateStepError(f"step {name!r} lists a dependency twice")
            for dep in one.dependencies:
                if dep not in self.steps:
                    raise InvalidDependencyError(f"step {name!r} depends on unknown step {dep!r}")
            if one.job.unique_key is not None:
                raise WorkflowError(f"step {name!r}: a step's job cannot have a unique_key")
        cycle = _find_cycle({name: one.dependencies for name, one in self.steps.items()})
        if cycle:
            raise CircularDependencyError(
                f"workflow {self.name!r}: circular dependency: {' -> '.join(cycle)}"
            )


class WorkflowRef:
    """References a pushed workflow (returned by `push_workflow`); equal to its id as `str`."""

    __slots__ = ("identifier",)
    identifier: str

    def __init__(self, identifier: str | uuid.UUID | WorkflowRef) -> None:
        if isinstance(identifier, WorkflowRef):
            identifier = identifier.identifier
        try:
            self.identifier = str(uuid.UUID(str(identifier)))
        except ValueError:
            raise ValueError(f"not a workflow id: {identifier!r}") from None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, WorkflowRef):
            return self.identifier == other.identifier
        if isinstance(other, str | uuid.UUID):
            return self.identifier == str(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.identifier)

    def __repr__(self) -> str:
        return f"<WorkflowRef({self.identifier!r})>"

    def __str__(self) -> str:
        return self.identifier


def _find_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    """A cycle of `deps` as a path (first name repeated at the end), or None; iterative."""
    color: dict[str, int] = dict.fromkeys(deps, 0)
    for start in deps:
        if color[start]:
            continue
        path: list[str] = []
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(deps[start]))]
        color[start] = 1
        path.append(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                color[node] = 2
                continue
            if child not in color:
                continue
            if color[child] == 1:
                return [*path[path.index(child) :], child]
            if color[child] == 0:
                color[child] = 1
                path.append(child)
                stack.append((child, iter(deps[child])))
    return None


# -- the >> sugar ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Step:
    """A named step for the `>>` sugar: ``a >> b >> c`` is a chain, ``[a, b] >> c`` a fan-in,
    ``a >> [b, c]`` a fan-out. `inputs` as in `Workflow.add`."""

    name: str
    job: Job
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)

    def __rshift__(self, other: Step | Flow | list[Step | Flow]) -> Flow:
        return _as_flow(self) >> other

    def __rrshift__(self, other: list[Step | Flow]) -> Flow:
        return _as_flow(other) >> self


def step(name: str, job: Job | Any, *, inputs: dict[str, str] | None = None) -> Step:
    """A `Step` named `name` running `job` (a `Job` or an `@job` function)."""
    return Step(name, _as_job(job, f"step {name!r}"), dict(inputs or {}))


@dataclasses.dataclass
class Flow:
    """Steps joined by `>>`: its nodes, edges (step -> its dependencies), and the steps it
    starts and ends with."""

    nodes: list[Step]
    edges: dict[str, list[str]]
    heads: list[str]
    tails: list[str]

    def __rshift__(self, other: Step | Flow | list[Step | Flow]) -> Flow:
        right = _as_flow(other)
        nodes = list(self.nodes)
        seen = {n.name for n in nodes}
        nodes += [n for n in right.nodes if n.name not in seen]
        edges = {k: list(v) for k, v in self.edges.items()}
        for k, v in right.edges.items():
            edges.setdefault(k, []).extend(d for d in v if d not in edges.get(k, []))
        for head in right.heads:
            edges.setdefault(head, []).extend(t for t in self.tails if t not in edges[head])
        return Flow(nodes, edges, list(self.heads), list(right.tails))

    def __rrshift__(self, other: list[Step | Flow]) -> Flow:
        return _as_flow(other) >> self


def _as_flow(value: Step | Flow | Iterable[Step | Flow]) -> Flow:
    if isinstance(value, Flow):
        return value
    if isinstance(value, Step):
        return Flow([value], {}, [value.name], [value.name])
    if isinstance(value, list | tuple):
        parts = [_as_flow(v) for v in value]
        nodes: list[Step] = []
        edges: dict[str, list[str]] = {}
        heads: list[str] = []
        tails: list[str] = []
        for part in parts:
            nodes += part.nodes
            for k, v in part.edges.items():
                edges.setdefault(k, []).extend(v)
            heads += part.heads
            tails += part.tails
        return Flow(nodes, edges, heads, tails)
    raise WorkflowError(f"expected a step, a >> expression or a list of them, got {value!r}")


class Sequence:
    """Jobs run one after the other (upstream's name): steps ``step_0``, ``step_1``, ..."""

    def __init__(self, name: str, jobs: list[Job | Any] | None = None) -> None:
        self.name = name
        self.jobs = list(jobs or [])

    def add(self, job: Job | Any) -> Sequence:
        self.jobs.append(job)
        return self

    def workflow(self) -> Workflow:
        flow = Workflow(self.name)
        for index, job in enumerate(self.jobs):
            flow.add(f"step_{index}", job, [f"step_{index - 1}"] if index else [])
        return flow

    async def push(self, chancy: Chancy) -> str:
        """Push the sequence as a workflow; returns the workflow's id."""
        return str(await push_workflow(chancy, self.workflow()))


# -- what a step sees --------------------------------------------------------------------------


def dependency_results(job: QueuedJob) -> dict[str, Any]:
    """`{step name: result}` of the dependencies of the step `job` that succeeded (give the
    step's function a keyword-only ``job: QueuedJob`` parameter to receive it)."""
    info = job.meta.get("workflow")
    results = info.get("results") if isinstance(info, dict) else None
    return dict(results) if isinstance(results, dict) else {}


def failed_dependencies(job: QueuedJob) -> list[str]:
    """Names of the dependencies of the step `job` that failed or were cancelled (only a
    workflow with ``continue_on_failure`` runs such a step)."""
    info = job.meta.get("workflow")
    failed = info.get("failed") if isinstance(info, dict) else None
    return list(failed) if isinstance(failed, list) else []


def step_of(job: QueuedJob) -> tuple[str, str] | None:
    """(workflow id, step name) of a step's job, or None for a job outside any workflow."""
    info = job.meta.get("workflow")
    if isinstance(info, dict) and "id" in info and "step" in info:
        return str(info["id"]), str(info["step"])
    return None


# -- operations (each one coroutine over a `Conn`; async, sync and _ex run it) -----------------


def _run(chancy: Chancy, operation: Callable[[Conn], Coroutine[Any, Any, Any]]) -> Any:
    async def go() -> Any:
        async with chancy.db.connection() as conn:
            return await operation(conn)

    return go()


def _run_sync(chancy: Chancy, operation: Callable[[Conn], Coroutine[Any, Any, Any]]) -> Any:
    with chancy.sync_pool.connection() as raw:
        return run_blocking(operation(BlockingConn(raw)))


def _plan(workflow: Workflow) -> tuple[list[Job], list[dict[str, Any]]]:
    workflow.validate()
    names = list(workflow.steps)
    dependents: dict[str, list[str]] = {name: [] for name in names}
    for name, one in workflow.steps.items():
        for dep in one.dependencies:
            dependents[dep].append(name)
    jobs: list[Job] = []
    rows: list[dict[str, Any]] = []
    for position, (name, one) in enumerate(workflow.steps.items()):
        meta = {**one.job.meta, "workflow": {"id": workflow.id, "step": name}}
        waits = bool(one.dependencies)
        job = dataclasses.replace(
            one.job, meta=meta, scheduled_at=wsql.WAITING_AT if waits else one.job.scheduled_at
        )
        jobs.append(job)
        rows.append(
            {
                "name": name,
                "position": position,
                "dependencies": one.dependencies,
                "dependents": dependents[name],
                "inputs": one.inputs,
                "remaining": len(one.dependencies),
                "state": "waiting" if waits else "ready",
                "run_at": one.job.scheduled_at.isoformat(),
            }
        )
    return jobs, rows


async def _push_op(chancy: Chancy, conn: Conn, workflow: Workflow, own_tx: bool) -> WorkflowRef:
    jobs, rows = _plan(workflow)
    transaction = conn.transaction() if own_tx else contextlib.nullcontext()
    async with transaction:
        refs = []
        for offset in range(0, len(jobs), 1000):
            refs += await chancy._push_conn(conn, jobs[offset : offset + 1000], offset)
        for row, ref in zip(rows, refs, strict=True):
            row["job_id"] = ref.identifier
        try:
            await conn.execute(
                wsql.insert_workflow_query(chancy.tables),
                {
                    "id": workflow.id,
                    "name": workflow.name,
                    "continue_on_failure": workflow.continue_on_failure,
                    "total": len(rows),
                    "steps": dumps(rows),
                },
            )
        except psycopg.errors.UniqueViolation:
            raise WorkflowError(
                f"workflow {workflow.id} ({workflow.name!r}) was pushed already: make a new"
                " Workflow to run it again"
            ) from None
    for row in rows:
        workflow.steps[row["name"]].job_id = row["job_id"]
    return WorkflowRef(workflow.id)


async def push_workflow(chancy: Chancy, workflow: Workflow) -> WorkflowRef:
    """Push every step of `workflow` in one transaction (validated first: see
    `Workflow.validate`); returns its reference. Steps without dependencies are due at once."""
    op = functools.partial(_push_op, chancy, workflow=workflow, own_tx=True)
    result: WorkflowRef = await _run(chancy, op)
    return result


async def push_workflow_ex(chancy: Chancy, cursor: AsyncCursor, workflow: Workflow) -> WorkflowRef:
    """`push_workflow` with the caller's cursor, inside the caller's transaction."""
    return await _push_op(chancy, CursorConn(cursor), workflow, own_tx=False)


def sync_push_workflow(chancy: Chancy, workflow: Workflow) -> WorkflowRef:
    """Synchronous `push_workflow`."""
    op = functools.partial(_push_op, chancy, workflow=workflow, own_tx=True)
    result: WorkflowRef = _run_sync(chancy, op)
    return result


def sync_push_workflow_ex(chancy: Chancy, cursor: Cursor, workflow: Workflow) -> WorkflowRef:
    """Synchronous `push_workflow_ex`."""
    return run_blocking(_push_op(chancy, BlockingCursorConn(cursor), workflow, own_tx=False))


def _workflow_from_row(row: tuple[Any, ...]) -> Workflow:
    id_, name, state, cont, total, unfinished, failed, created, updated, completed = row
    flow = Workflow(name, continue_on_failure=cont)
    flow.id = id_
    flow.state = Workflow.State(state)
    flow.created_at, flow.updated_at, flow.completed_at = created, updated, completed
    flow.total_steps, flow.unfinished_steps, flow.failed_steps = total, unfinished, failed
    return flow


async def _get_op(chancy: Chancy, conn: Conn, ref: WorkflowRef | str) -> Workflow | None:
    params = {"id": str(WorkflowRef(ref))}
    row = await conn.fetchone(wsql.get_workflow_query(chancy.tables), params)
    if row is None:
        return None
    flow = _workflow_from_row(row)
    started = False
    columns = text_job_columns("j")
    for name, job_id, deps, inputs, status, run_at, *job_row in await conn.fetchall(
        wsql.get_steps_query(chancy.tables, columns), params
    ):
        queued = read_job(tuple(job_row)) if job_row[0] is not None else None
        job = (
            Job.unpack(queued.pack()).with_scheduled_at(run_at)
            if queued
            else Job(func="(deleted)", scheduled_at=run_at)
        )
        flow.steps[name] = WorkflowStep(
            job=job,
            step_id=name,
            dependencies=list(deps),
            inputs=dict(inputs or {}),
            state=queued.state if queued else None,
            job_id=job_id,
            result=queued.result if queued else None,
            status=status,
            queued_job=queued,
        )
        started = started or (queued is not None and queued.attempts > 0)
    if flow.state == Workflow.State.PENDING and started:
        # Stored as pending until a step finishes (claims do not write the workflow).
        flow.state = Workflow.State.RUNNING
    return flow


async def get_workflow(chancy: Chancy, ref: WorkflowRef | str) -> Workflow | None:
    """The workflow `ref` points to, with every step's job state and result (None when it
    does not exist)."""
    result: Workflow | None = await _run(chancy, functools.partial(_get_op, chancy, ref=ref))
    return result


def sync_get_workflow(chancy: Chancy, ref: WorkflowRef | str) -> Workflow | None:
    """Synchronous `get_workflow`."""
    result: Workflow | None = _run_sync(chancy, functools.partial(_get_op, chancy, ref=ref))
    return result


async def _list_op(
    chancy: Chancy,
    conn: Conn,
    state: Workflow.State | str | None,
    name: str | None,
    limit: int,
    after: WorkflowRef | str | None,
) -> list[Workflow]:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit: expected an integer >= 1, got {limit!r}")
    params: dict[str, Any] = {"limit": limit}
    if state is not None:
        params["state"] = Workflow.State(state).value
    if name is not None:
        params["name"] = name
    if after is not None:
        params["after"] = str(WorkflowRef(after))
    query = wsql.list_workflows_query(
        chancy.tables, state is not None, name is not None, after is not None
    )
    return [_workflow_from_row(row) for row in await conn.fetchall(query, params)]


async def list_workflows(
    chancy: Chancy,
    *,
    state: Workflow.State | str | None = None,
    name: str | None = None,
    limit: int = 100,
    after: WorkflowRef | str | None = None,
) -> list[Workflow]:
    """The newest workflows first, at most `limit`, with their counters but without steps
    (read one with `get_workflow`); `after`: the last id of the previous page."""
    op = functools.partial(_list_op, chancy, state=state, name=name, limit=limit, after=after)
    result: list[Workflow] = await _run(chancy, op)
    return result


def sync_list_workflows(
    chancy: Chancy,
    *,
    state: Workflow.State | str | None = None,
    name: str | None = None,
    limit: int = 100,
    after: WorkflowRef | str | None = None,
) -> list[Workflow]:
    """Synchronous `list_workflows`."""
    op = functools.partial(_list_op, chancy, state=state, name=name, limit=limit, after=after)
    result: list[Workflow] = _run_sync(chancy, op)
    return result


async def _exists(chancy: Chancy, conn: Conn, ref: WorkflowRef | str) -> None:
    row = await conn.fetchone(wsql.workflow_state_query(chancy.tables), {"id": str(ref)})
    if row is None:
        raise UnknownWorkflowError(f"unknown workflow {str(ref)!r}")


async def _retry_op(chancy: Chancy, conn: Conn, ref: WorkflowRef | str) -> list[str]:
    ref = WorkflowRef(ref)
    await _exists(chancy, conn, ref)
    rows = await conn.fetchall(
        wsql.retry_workflow_query(chancy.tables),
        {"id": str(ref), "notify": chancy.notifications},
    )
    return [id_ for id_, _ in rows if id_ is not None]


async def retry_workflow(chancy: Chancy, ref: WorkflowRef | str) -> list[str]:
    """Run the failed steps of a workflow again, and after them what they lead to (cancelled
    steps wait for them again); succeeded steps are kept. Returns the ids of the step jobs
    re-run; the workflow is RUNNING again. `UnknownWorkflowError` if there is none."""
    result: list[str] = await _run(chancy, functools.partial(_retry_op, chancy, ref=ref))
    return result


def sync_retry_workflow(chancy: Chancy, ref: WorkflowRef | str) -> list[str]:
    """Synchronous `retry_workflow`."""
    result: list[str] = _run_sync(chancy, functools.partial(_retry_op, chancy, ref=ref))
    return result


async def _cancel_op(chancy: Chancy, conn: Conn, ref: WorkflowRef | str) -> list[str]:
    ref = WorkflowRef(ref)
    await _exists(chancy, conn, ref)
    for attempt in range(5):
        try:
            async with conn.transaction():
                rows = await conn.fetchall(
                    wsql.cancel_workflow_query(chancy.tables),
                    {"id": str(ref), "notify": chancy.notifications},
                )
            return [id_ for id_, _ in rows if id_ is not None]
        except Exception as exc:  # a deadlock with a worker finishing a step: try again
            if getattr(exc, "sqlstate", None) != "40P01" or attempt == 4:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def cancel_workflow(chancy: Chancy, ref: WorkflowRef | str) -> list[str]:
    """Cancel every unfinished step like `Chancy.cancel_job` (waiting steps fail at once,
    running ones are asked to stop); the workflow ends FAILED. Returns the step job ids
    acted on."""
    result: list[str] = await _run(chancy, functools.partial(_cancel_op, chancy, ref=ref))
    return result


def sync_cancel_workflow(chancy: Chancy, ref: WorkflowRef | str) -> list[str]:
    """Synchronous `cancel_workflow`."""
    result: list[str] = _run_sync(chancy, functools.partial(_cancel_op, chancy, ref=ref))
    return result


def _mentions(payload: str, wanted: str) -> bool:
    try:
        message = json.loads(payload)
    except ValueError:
        return True
    if not isinstance(message, dict):
        return True
    return bool(message.get("overflow")) or (
        message.get("t") == "workflow.done" and message.get("id") == wanted
    )


async def _wait_op(
    chancy: Chancy,
    conn: Conn,
    ref: WorkflowRef | str,
    interval: float,
    deadline: float | None,
    blocking: bool,
) -> Workflow:
    wanted = str(WorkflowRef(ref))
    sleep = blocking_sleep if blocking else anyio.sleep

    async def load() -> Workflow:
        flow = await _get_op(chancy, conn, wanted)
        if flow is None:
            raise UnknownWorkflowError(f"unknown workflow {wanted!r}")
        return flow

    def pause() -> float:
        if deadline is None:
            return interval
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"workflow {wanted} did not finish in time")
        return min(interval, remaining)

    if not chancy.notifications:
        flow = await load()
        while not flow.is_complete:
            await sleep(pause())
            flow = await load()
        return flow
    channel = sql.Identifier(chancy.tables.channel)
    await conn.execute(sql.SQL("LISTEN {}").format(channel))
    try:
        flow = await load()
        while not flow.is_complete:
            notices = await conn.notifies(timeout=pause())
            if not notices or any(_mentions(payload, wanted) for _, payload in notices):
                flow = await load()
        return flow
    finally:
        with contextlib.nullcontext() if blocking else anyio.CancelScope(shield=True):
            await conn.execute(sql.SQL("UNLISTEN {}").format(channel))
            await conn.notifies(timeout=0.0)


async def wait_for_workflow(
    chancy: Chancy,
    ref: WorkflowRef | str,
    *,
    interval: float = 1,
    timeout: float | None = None,
) -> Workflow:
    """Wait until the workflow is COMPLETED or FAILED and return it (with its steps).

    Wakes on the workflow's completion notice (`interval` is the fallback poll); raises
    `TimeoutError` after `timeout` seconds and `UnknownWorkflowError` if it does not exist.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    op = functools.partial(
        _wait_op, chancy, ref=ref, interval=interval, deadline=deadline, blocking=False
    )
    with anyio.fail_after(timeout + 1 if timeout is not None else math.inf):
        result: Workflow = await _run(chancy, op)
    return result


def sync_wait_for_workflow(
    chancy: Chancy,
    ref: WorkflowRef | str,
    *,
    interval: float = 1,
    timeout: float | None = None,
) -> Workflow:
    """Synchronous `wait_for_workflow` (blocks the calling thread)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    op = functools.partial(
        _wait_op, chancy, ref=ref, interval=interval, deadline=deadline, blocking=True
    )
    result: Workflow = _run_sync(chancy, op)
    return result


# -- the plugin --------------------------------------------------------------------------------

_COLORS = {
    QueuedJob.State.PENDING: "lightblue",
    QueuedJob.State.RUNNING: "yellow",
    QueuedJob.State.RETRYING: "orange",
    QueuedJob.State.SUCCEEDED: "lightgreen",
    QueuedJob.State.FAILED: "lightpink",
}


def _dot_id(text: str) -> str:
    return json.dumps(text)


class WorkflowPlugin(Plugin):
    """Owns the workflow tables and the triggers that advance workflows (no actor: progress
    happens in the transactions that finish steps). Pruning removes workflows finished more
    than `retention` seconds ago (their steps' jobs are pruned by the pruner).

    The class methods are upstream Chancy's names for the module's functions.
    """

    identifier = "workflow"

    def __init__(self, *, retention: float = 7 * 24 * 3600) -> None:
        self.retention = check_seconds("retention", retention)

    def migrations(self) -> list[Migration]:
        return [Migration(1, "workflows, their steps and triggers", wsql.v1_up, wsql.v1_down)]

    async def cleanup(self, chancy: Chancy) -> int:
        async with chancy.db.connection() as conn:
            rows = await conn.fetchall(
                wsql.cleanup_query(chancy.tables),
                {"age": self.retention},
            )
        return len(rows)

    @classmethod
    async def push(cls, chancy: Chancy, workflow: Workflow) -> str:
        """Push `workflow`; returns its id."""
        return str(await push_workflow(chancy, workflow))

    @classmethod
    async def push_ex(cls, chancy: Chancy, cursor: AsyncCursor, workflow: Workflow) -> str:
        """`push` inside the caller's transaction."""
        return str(await push_workflow_ex(chancy, cursor, workflow))

    @classmethod
    async def fetch_workflow(cls, chancy: Chancy, id_: str) -> Workflow | None:
        return await get_workflow(chancy, id_)

    @classmethod
    async def fetch_workflows(
        cls, chancy: Chancy, *, states: list[str] | None = None, limit: int = 100
    ) -> list[Workflow]:
        found = []
        for flow in await list_workflows(chancy, limit=limit):
            if states is None or flow.state.value in states:
                one = await get_workflow(chancy, flow.id)
                if one is not None:
                    found.append(one)
        return found

    @classmethod
    async def wait_for_workflow(
        cls,
        chancy: Chancy,
        workflow_id: str,
        *,
        interval: float = 1,
        timeout: float | None = None,
    ) -> Workflow:
        return await wait_for_workflow(chancy, workflow_id, interval=interval, timeout=timeout)

    @staticmethod
    def generate_dot(workflow: Workflow, output: TextIO) -> None:
        """Write `workflow` as a Graphviz DOT digraph: one node per step, coloured by state."""
        output.write("digraph workflow {\n")
        output.write("  rankdir=LR;\n  node [shape=box, style=filled];\n")
        label = f"Workflow: {workflow.name}\nState: {workflow.state.value}"
        output.write(f"  label={_dot_id(label)};\n")
        for name, one in workflow.steps.items():
            color = _COLORS.get(one.state, "white") if one.state else "white"
            if one.status == "cancelled":
                color = "lightgrey"
            text = f"{name}\n{one.job.func}\n{one.status or (one.state.value if one.state else '')}"
            output.write(f"  {_dot_id(name)} [label={_dot_id(text)}, fillcolor={color}];\n")
        for name, one in workflow.steps.items():
            for dep in one.dependencies:
                output.write(f"  {_dot_id(dep)} -> {_dot_id(name)};\n")
        output.write("}\n")


__all__ = [
    "CircularDependencyError",
    "DuplicateStepError",
    "EmptyWorkflowError",
    "Flow",
    "InvalidDependencyError",
    "Sequence",
    "Step",
    "UnknownWorkflowError",
    "Workflow",
    "WorkflowError",
    "WorkflowPlugin",
    "WorkflowRef",
    "WorkflowStep",
    "cancel_workflow",
    "dependency_results",
    "failed_dependencies",
    "get_workflow",
    "list_workflows",
    "push_workflow",
    "push_workflow_ex",
    "retry_workflow",
    "step",
    "step_of",
    "sync_cancel_workflow",
    "sync_get_workflow",
    "sync_list_workflows",
    "sync_push_workflow",
    "sync_push_workflow_ex",
    "sync_retry_workflow",
    "sync_wait_for_workflow",
    "wait_for_workflow",
]
