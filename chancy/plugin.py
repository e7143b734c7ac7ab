"""The plugin interface: an actor in the worker's task group, with optional migrations and hooks.

A plugin has a unique `identifier`, may depend on other plugins (by identifier), runs on every
worker or only on the leader (`leader_only`), may own tables (`migrations()`, migrated by
`Chancy.migrate()` and counted by `Chancy.is_up_to_date()`), and may change a job as it starts
and as it completes (`on_job_starting`, `on_job_completed`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from chancy.job import QueuedJob
from chancy.migrations import Migration

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker


class Plugin:
    """Base class of plugins. Subclasses set `identifier` and override what they need."""

    identifier: ClassVar[str] = ""
    dependencies: ClassVar[tuple[str, ...]] = ()
    leader_only: ClassVar[bool] = False

    def migrations(self) -> list[Migration]:
        """The plugin's schema migrations, numbered from 1 (none by default)."""
        return []

    async def run(
        self, worker: Worker, chancy: Chancy, *, task_status: Any = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The plugin's actor; runs until cancelled. The default does nothing."""
        task_status.started()

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
