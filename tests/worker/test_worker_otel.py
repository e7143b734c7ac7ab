"""OpenTelemetryPlugin: a trace started where a job is pushed continues in the worker."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import FAST

from chancy import Chancy, Job, Queue, QueuedJob
from chancy.plugins.otel import OpenTelemetryPlugin
from chancy.worker import Worker

pytestmark = pytest.mark.anyio

EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_PROVIDER)  # once per process: OpenTelemetry allows no second one


async def test_a_job_span_continues_the_trace_it_was_pushed_in(dsn, prefix) -> None:
    EXPORTER.clear()
    app = Chancy(dsn, prefix=prefix, plugins=[OpenTelemetryPlugin()])
    tracer = trace.get_tracer("a web app")
    async with app:
        await app.migrate()
        await app.declare(Queue("q", executor=Chancy.Executor.Async))
        with tracer.start_as_current_span("POST /orders") as request:
            ok = await app.push(Job(func="wjobs.async_noop", queue="q"))
        bad = await app.push(Job(func="wjobs.async_fail", queue="q"))  # outside any trace
        async with Worker(app, **FAST):
            assert (await app.wait_for_job(ok, timeout=30)).state == QueuedJob.State.SUCCEEDED
            assert (await app.wait_for_job(bad, timeout=30)).state == QueuedJob.State.FAILED
        stored = await app.get_job(ok)
        await app.migrate(to_version=0)
    assert "traceparent" in stored.meta["otel"]
    spans = {s.name: s for s in EXPORTER.get_finished_spans()}
    job_span = spans["chancy.job wjobs.async_noop"]
    assert job_span.context.trace_id == request.get_span_context().trace_id
    assert job_span.parent is not None
    assert job_span.parent.span_id == request.get_span_context().span_id
    assert job_span.kind == trace.SpanKind.CONSUMER
    assert job_span.attributes["chancy.queue"] == "q"
    assert job_span.attributes["chancy.job_id"] == ok.identifier
    assert job_span.attributes["chancy.outcome"] == "succeeded"
    failed = spans["chancy.job wjobs.async_fail"]
    assert failed.parent is None  # pushed outside a trace: a trace of its own
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert failed.attributes["chancy.outcome"] == "failed"
    assert any(event.name == "exception" for event in failed.events)
