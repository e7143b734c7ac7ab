"""chancy.testing, used as a user would: drain, Inline, assert_pushed and the pytest plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jobs
import pytest

from chancy import Chancy, Job, Queue, QueuedJob
from chancy.testing import Inline, JobFailed, assert_pushed, drain

pytestmark = pytest.mark.anyio


async def test_drain_runs_everything_due_then_returns(chancy: Chancy) -> None:
    await chancy.declare(Queue("mail", executor=Chancy.Executor.Async, concurrency=4))
    jobs.SENT.clear()
    for to in ("a", "b", "c"):
        await chancy.push(Job.from_func(jobs.async_sends, queue="mail", kwargs={"to": to}))
    done = await drain(chancy, timeout=30)
    assert sorted(jobs.SENT) == ["a", "b", "c"]
    assert sorted(job.result for job in done) == ["sent to a", "sent to b", "sent to c"]
    found = await assert_pushed(chancy, jobs.async_sends, to="b")
    assert isinstance(found, QueuedJob)
    assert found.state == QueuedJob.State.SUCCEEDED
    with pytest.raises(AssertionError, match="no job of jobs.async_sends"):
        await assert_pushed(chancy, jobs.async_sends, to="nobody")


async def test_drain_raises_the_first_job_that_fails_for_good(chancy: Chancy) -> None:
    await chancy.declare(Queue("q", executor=Chancy.Executor.Async))
    await chancy.push(Job.from_func(jobs.explodes, queue="q", kwargs={"why": "on purpose"}))
    with pytest.raises(JobFailed, match="exploded: on purpose") as caught:
        await drain(chancy, timeout=30)
    assert caught.value.job.state == QueuedJob.State.FAILED


async def test_inline_runs_jobs_at_once_without_a_database() -> None:
    app = Inline()
    jobs.SENT.clear()
    await app.push(Job.from_func(jobs.async_sends, kwargs={"to": "x"}))
    app.sync_push(Job.from_func(jobs.sends, kwargs={"to": "y"}))
    assert jobs.SENT == ["x", "y"]
    pushed = await assert_pushed(app, "jobs.sends", to="y")
    assert pushed.result == "sent to y"  # type: ignore[union-attr]
    with pytest.raises(RuntimeError, match="exploded: now"):
        await app.push(Job.from_func(jobs.explodes, kwargs={"why": "now"}))
    quiet = Inline(raise_errors=False)
    await quiet.push(Job.from_func(jobs.explodes, kwargs={"why": "later"}))
    assert isinstance(quiet.pushed[0].error, RuntimeError)


def test_the_pytest_plugin_gives_a_migrated_app(tmp_path: Path, dsn: str) -> None:
    """A user's conftest says `pytest_plugins = ["chancy.testing"]` and gets `chancy_app`."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["chancy.testing"]\n')
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from chancy import Job, Queue
            from chancy.testing import assert_pushed, drain

            def greet(name: str) -> str:
                return f"hello {name}"

            @pytest.mark.anyio
            async def test_greeting(chancy_app):
                await chancy_app.declare(Queue("default", executor=chancy_app.Executor.Async))
                await chancy_app.push(Job.from_func(greet, kwargs={"name": "ada"}))
                [done] = await drain(chancy_app)
                assert done.result == "hello ada"
                await assert_pushed(chancy_app, greet, name="ada")

            @pytest.fixture
            def anyio_backend():
                return "asyncio"
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "CHANCY_TEST_DSN": dsn, "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
