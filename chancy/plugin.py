"""The plugin interface: an actor in the worker's task group, with optional migrations and hooks.

A plugin has a unique `identifier`, may depend on other plugins (by identifier), runs on every
worker or only on the leader (`leader_only`), may own tables (`migrations()`, migrated by
`Chancy.migrate()` as the component ``plugin:<identifier>`` and counted by
`Chancy.is_up_to_date()`), and may change a job as it starts and as it completes
(`on_job_starting`, `on_job_completed`). Pruning calls every plugin's `cleanup()`.

The worker starts each plugin's `run()` in its task group (a plugin that raises is logged and
restarted). A leader-only plugin's actor does its work only while `worker.is_leader` is set;
`leader_passes()` is the loop they share. A small plugin::

    class Report(Plugin):
        identifier = "report"
        dependencies = ("leadership",)
        leader_only = True

        async def run(self, worker, chancy, *, task_status=anyio.TASK_STATUS_IGNORED):
            task_status.started()
            await leader_passes(worker, 60, self.report)  # once a minute, on the leader only

        async def report(self) -> None:
            ...
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from chancy.app import Chancy
    from chancy.job import Job, QueuedJob
    from chancy.migrations import Migration
    from chancy.worker import Worker


class Plugin:
    """Base class of plugins. Subclasses set `identifier` and override what they need."""

    #: A name unique among an app's plugins; also names the plugin's migration component.
    identifier: ClassVar[str] = ""
    #: Identifiers of plugins that must be in the same app's plugin list.
    dependencies: ClassVar[tuple[str, ...]] = ()
    #: Whether the plugin's work happens only on the cluster's leader.
    leader_only: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.identifier!r}>"

    def migrations(self) -> list[Migration]:
        """The plugin's schema migrations, numbered from 1 (none by default)."""
        return []

    async def run(
        self, worker: Worker, chancy: Chancy, *, task_status: Any = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The plugin's actor; runs until cancelled. The default does nothing."""
        task_status.started()

    def on_push(self, job: Job) -> Job:
        """Called for each job as it is pushed, in the pushing process (before it is stored);
        may return a changed job, e.g. with meta added. Must be quick: it is on the push path."""
        return job

    async def on_job_starting(self, job: QueuedJob, worker: Worker) -> QueuedJob:
        """Called before a job runs; may return a changed job."""
        return job

    async def on_job_completed(
        self, job: QueuedJob, worker: Worker, *, error: BaseException | None
    ) -> QueuedJob:
        """Called with the job's new state after it ran; may return a changed job."""
        return job

    async def cleanup(self, chancy: Chancy) -> int:
        """Delete data the plugin no longer needs (called by pruning); returns rows removed."""
        return 0


def check_plugins(plugins: list[Plugin]) -> list[Plugin]:
    """Refuse duplicate identifiers and missing dependencies."""
    seen: dict[str, Plugin] = {}
    for plugin in plugins:
        if not isinstance(plugin, Plugin):
            raise TypeError(f"plugins: {plugin!r} is not a chancy.plugin.Plugin")
        if not plugin.identifier:
            raise ValueError(f"plugins: {type(plugin).__name__} has no identifier")
        if plugin.identifier in seen:
            raise ValueError(f"plugins: duplicate plugin identifier {plugin.identifier!r}")
        seen[plugin.identifier] = plugin
    for plugin in plugins:
        missing = [dep for dep in plugin.dependencies if dep not in seen]
        if missing:
            raise ValueError(
                f"plugins: {plugin.identifier!r} needs {', '.join(map(repr, missing))}, "
                "which is not in the plugin list"
            )
    return plugins


# -- helpers shared by the built-in plugins ----------------------------------------------------


def check_seconds(name: str, value: float, *, allow_zero: bool = False) -> float:
    """`value` as seconds, or a `ValueError` naming the option."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name}: expected seconds {'>=' if allow_zero else '>'} 0, got {value}")
    return float(value)


def worker_identity(worker: Worker) -> tuple[str, str]:
    """The worker's `(worker_id, incarnation)`: a restarted worker keeps its id, not this nonce."""
    return worker.worker_id, str(worker.incarnation)


def is_leader(worker: Worker) -> bool:
    """Whether `worker.is_leader` is set."""
    return bool(worker.is_leader.is_set())


def emit(worker: Worker, event: str, **data: Any) -> None:
    """Send a local event on the worker's hub (a no-op for a worker without one)."""
    hub = getattr(worker, "hub", None)
    if hub is not None:
        hub.emit(event, **data)


async def leader_passes(
    worker: Worker, interval: float, work: Callable[[], Awaitable[object]]
) -> None:
    """Await `work()` every `interval` seconds while the worker leads (first pass at once);
    runs until cancelled.

    While the worker does not lead, waits for `worker.is_leader`, so a worker that becomes the
    leader starts the leader's work at once.
    """
    while True:
        if not is_leader(worker):
            await worker.is_leader.wait()
            continue
        await work()
        await anyio.sleep(interval)
