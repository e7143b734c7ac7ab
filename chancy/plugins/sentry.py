"""Report failed jobs to Sentry (the `sentry` extra: ``pip install 'chancy-queue[sentry]'``).

::

    import sentry_sdk
    from chancy.plugins import default_plugins
    from chancy.plugins.sentry import SentryPlugin

    sentry_sdk.init(dsn="https://...")  # yours, as for the rest of your app
    chancy = Chancy(dsn, plugins=[*default_plugins(), SentryPlugin()])

Each attempt that fails for good (and, with ``report_retries=True``, each failed attempt that
will be retried) becomes one Sentry event: the exception (for a process-executor job, the
error as it crossed from the child, with its traceback text in the ``chancy.job`` context),
tags ``chancy.queue``, ``chancy.func``, ``chancy.attempt`` and ``chancy.job_id``, and the job's
kwargs as context, with the values of keys that look secret (``mask``) replaced.
Call ``sentry_sdk.init()`` yourself: the plugin only reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chancy.job import QueuedJob
from chancy.plugin import Plugin

if TYPE_CHECKING:
    from collections.abc import Collection

    from chancy.worker import Worker

#: Parts of a kwargs key whose value is never sent (compared case-insensitively).
DEFAULT_MASK = ("password", "passwd", "secret", "token", "key", "authorization", "dsn", "cookie")
MASKED = "[masked]"


def mask_values(value: Any, mask: Collection[str]) -> Any:
    """`value` with the values under secret-looking keys replaced, at any depth."""
    if isinstance(value, dict):
        return {
            k: MASKED if any(m in str(k).lower() for m in mask) else mask_values(v, mask)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_values(v, mask) for v in value]
    return value


def secret_values(value: Any, mask: Collection[str]) -> set[str]:
    """The values (as text) found under secret-looking keys of `value`, at any depth."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if any(m in str(k).lower() for m in mask):
                if isinstance(v, dict | list | tuple):
                    found |= {s for s in _leaves(v) if s}
                elif v not in (None, ""):
                    found.add(str(v))
            else:
                found |= secret_values(v, mask)
    elif isinstance(value, list | tuple):
        for v in value:
            found |= secret_values(v, mask)
    return found


def _leaves(value: Any) -> set[str]:
    if isinstance(value, dict):
        return {s for v in value.values() for s in _leaves(v)}
    if isinstance(value, list | tuple):
        return {s for v in value for s in _leaves(v)}
    return {str(value)} if value not in (None, "") else set()


def scrub(event: Any, secrets: set[str]) -> Any:
    """`event` with every string that holds one of `secrets` replaced (Sentry also sends the
    frames' local variables, which hold the job's kwargs)."""
    if isinstance(event, dict):
        return {k: scrub(v, secrets) for k, v in event.items()}
    if isinstance(event, list):
        return [scrub(v, secrets) for v in event]
    if isinstance(event, str) and any(s in event for s in secrets):
        return MASKED
    return event


class SentryPlugin(Plugin):
    """Report failed jobs to Sentry, with the job's queue, func, attempt and id as tags.

    :param mask: parts of kwargs keys whose values are replaced by "[masked]".
    :param report_retries: also report failed attempts that will be retried.
    """

    identifier = "sentry"

    def __init__(
        self, *, mask: Collection[str] = DEFAULT_MASK, report_retries: bool = False
    ) -> None:
        try:
            import sentry_sdk  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "SentryPlugin needs sentry-sdk: pip install 'chancy-queue[sentry]'"
            ) from None
        self.mask = tuple(m.lower() for m in mask)
        self.report_retries = report_retries

    async def on_job_completed(
        self, job: QueuedJob, worker: Worker, *, error: BaseException | None
    ) -> QueuedJob:
        report = job.state == QueuedJob.State.FAILED or (
            self.report_retries and job.state == QueuedJob.State.RETRYING
        )
        if report and error is not None:
            self.report(job, error)
        return job

    def report(self, job: QueuedJob, error: BaseException) -> None:
        import sentry_sdk

        secrets = secret_values(dict(job.kwargs or {}), self.mask)
        with sentry_sdk.new_scope() as scope:
            if secrets:
                scope.add_event_processor(lambda event, hint: scrub(event, secrets))
            scope.set_tag("chancy.queue", job.queue)
            scope.set_tag("chancy.func", job.func)
            scope.set_tag("chancy.attempt", str(job.attempts))
            scope.set_tag("chancy.job_id", job.id)
            scope.set_context(
                "chancy.job",
                {
                    "kwargs": mask_values(dict(job.kwargs or {}), self.mask),
                    "attempts": job.attempts,
                    "max_attempts": job.max_attempts,
                    "state": job.state.value,
                    "traceback": job.errors[-1]["traceback"] if job.errors else None,
                },
            )
            sentry_sdk.capture_exception(error)
