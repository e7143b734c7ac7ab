"""OpenTelemetry tracing (the `otel` extra: ``pip install 'chancy-queue[otel]'``).

::

    from chancy.plugins import default_plugins
    from chancy.plugins.otel import OpenTelemetryPlugin

    chancy = Chancy(dsn, plugins=[*default_plugins(), OpenTelemetryPlugin()])

Give the plugin to the app that pushes and to the workers' app (usually the same `Chancy`).
On push, the current trace context (the web request's span, say) is written into the job's
meta under ``"otel"`` (W3C trace context); each run of the job becomes a span, ``chancy.job
<func>`` of kind CONSUMER, whose parent is that context, so the trace started in the request
continues in the worker. The span carries ``chancy.queue``, ``chancy.func``, ``chancy.attempt``,
``chancy.job_id`` and ``chancy.outcome`` (succeeded, failed, retrying), and records the error of
a failed attempt. Configure the SDK (tracer provider, exporter) as for the rest of your app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chancy.job import Job, QueuedJob
from chancy.plugin import Plugin

if TYPE_CHECKING:
    from chancy.worker import Worker

META_KEY = "otel"


class OpenTelemetryPlugin(Plugin):
    """Trace each job run as a span continuing the trace it was pushed in (see module)."""

    identifier = "otel"

    def __init__(self, *, tracer_name: str = "chancy") -> None:
        try:
            from opentelemetry import trace
        except ImportError:
            raise RuntimeError(
                "OpenTelemetryPlugin needs opentelemetry-api: pip install 'chancy-queue[otel]'"
            ) from None
        self._tracer = trace.get_tracer(tracer_name)
        self._spans: dict[str, Any] = {}

    def on_push(self, job: Job) -> Job:
        from opentelemetry import propagate

        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if not carrier:  # no span in progress: nothing to continue
            return job
        return job.with_meta({**job.meta, META_KEY: carrier})

    async def on_job_starting(self, job: QueuedJob, worker: Worker) -> QueuedJob:
        from opentelemetry import propagate, trace

        carrier = job.meta.get(META_KEY)
        parent = propagate.extract(carrier) if isinstance(carrier, dict) else None
        span = self._tracer.start_span(
            f"chancy.job {job.func}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "chancy.queue": job.queue,
                "chancy.func": job.func,
                "chancy.attempt": job.attempts,
                "chancy.job_id": job.id,
                "chancy.worker_id": worker.worker_id,
            },
        )
        self._spans[job.id] = span
        return job

    async def on_job_completed(
        self, job: QueuedJob, worker: Worker, *, error: BaseException | None
    ) -> QueuedJob:
        from opentelemetry.trace import Status, StatusCode

        span = self._spans.pop(job.id, None)
        if span is None:
            return job
        span.set_attribute("chancy.outcome", job.state.value)
        if job.state == QueuedJob.State.SUCCEEDED:
            span.set_status(Status(StatusCode.OK))
        else:
            if error is not None:
                span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__ if error else None))
        span.end()
        return job
