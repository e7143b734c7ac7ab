"""SentryPlugin: a failed job becomes one Sentry event with its tags and masked kwargs."""

from __future__ import annotations

from typing import ClassVar

import pytest
import sentry_sdk
from sentry_sdk.transport import Transport

from chancy import Chancy, Job, Queue, QueuedJob
from chancy.plugins.sentry import SentryPlugin, mask_values

pytestmark = pytest.mark.anyio


class Captured(Transport):
    """Sentry's transport, replaced: events are kept instead of sent."""

    events: ClassVar[list[dict]] = []

    def capture_envelope(self, envelope) -> None:  # type: ignore[no-untyped-def]
        for item in envelope.items:
            if item.type == "event":
                Captured.events.append(item.payload.json)


@pytest.fixture
def sentry():
    Captured.events.clear()
    sentry_sdk.init(dsn="https://public@sentry.example.invalid/1", transport=Captured)
    yield Captured.events
    sentry_sdk.init()  # no DSN: reporting off again


def test_secret_looking_values_are_masked_at_any_depth() -> None:
    kwargs = {"user": 1, "api_token": "t", "nested": {"Password": "p", "ok": [{"dsn": "d"}]}}
    assert mask_values(kwargs, ("token", "password", "dsn")) == {
        "user": 1,
        "api_token": "[masked]",
        "nested": {"Password": "[masked]", "ok": [{"dsn": "[masked]"}]},
    }


async def test_a_failed_job_is_reported_with_its_tags(dsn, prefix, sentry) -> None:
    from support import FAST

    from chancy.worker import Worker

    app = Chancy(dsn, prefix=prefix, plugins=[SentryPlugin()])
    async with app:
        await app.migrate()
        await app.declare(Queue("q", executor=Chancy.Executor.Async))
        ok = await app.push(Job(func="wjobs.async_noop", queue="q"))
        bad = await app.push(
            Job(
                func="wjobs.async_fail_with",
                queue="q",
                kwargs={"label": "boom", "api_token": "s3cr3t"},
                max_attempts=2,
            )
        )
        async with Worker(app, **FAST):
            job = await app.wait_for_job(bad, timeout=30)
            assert (await app.wait_for_job(ok, timeout=30)).state == QueuedJob.State.SUCCEEDED
        await app.migrate(to_version=0)
    assert job.state == QueuedJob.State.FAILED
    sentry_sdk.flush()
    assert len(sentry) == 1  # the retried first attempt is not reported, the last one is
    event = sentry[0]
    assert event["tags"]["chancy.queue"] == "q"
    assert event["tags"]["chancy.func"] == "wjobs.async_fail_with"
    assert event["tags"]["chancy.attempt"] == "2"
    assert event["tags"]["chancy.job_id"] == bad.identifier
    context = event["contexts"]["chancy.job"]
    assert context["kwargs"] == {"label": "boom", "api_token": "[masked]"}
    assert "s3cr3t" not in str(event)
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
