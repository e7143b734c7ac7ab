"""chancy.contrib.django against the real PostgreSQL: the unmanaged models (custom prefix), the
admin (changelist, filters, retry/cancel/purge actions), ``manage.py chancy``, the
process-executor initializer, and the django-tasks backend run by a real worker.

Django is configured once for the session (tests/django_project/settings.py, reading the test
database from the environment); the environment is restored as soon as the settings are read,
so other tests (and the children they start) never see DJANGO_SETTINGS_MODULE.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

pytest.importorskip("django")
pytest.importorskip("django_tasks")

from chancy import Chancy, Job, Queue
from chancy.testing import drain

THREADED = "chancy.executors.thread.ThreadedExecutor"


def _env(dsn: str, prefix: str) -> dict[str, str]:
    """What tests/django_project/settings.py reads."""
    return {
        "CHANCY_DJANGO_TEST_DB": dsn,
        "CHANCY_DJANGO_TEST_PREFIX": prefix,
        "DJANGO_SETTINGS_MODULE": "django_project.settings",
    }


@pytest.fixture(scope="session")
def django_prefix(dsn: str) -> Iterator[str]:
    """Django set up on the session database; Chancy's tables under a prefix of their own."""
    import django
    from django.conf import settings

    prefix = f"dj{secrets.token_hex(3)}_"
    env = _env(dsn, prefix)
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        django.setup()
        assert {"prefix": prefix} == settings.CHANCY
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connections

    from chancy.contrib.django import get_app

    get_app().sync_migrate()
    call_command("migrate", verbosity=0)
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    try:
        yield prefix
    finally:
        get_app().db.close_sync()
        connections.close_all()


@pytest.fixture
def app(dsn: str, django_prefix: str) -> Chancy:
    from chancy.contrib.django import get_app

    chancy = get_app()
    with chancy.sync_pool.connection() as conn:
        conn.execute(chancy.tables.q("DELETE FROM {jobs}"))
    return chancy


@pytest.fixture
def client(django_prefix: str) -> Any:
    from django.test import Client

    c = Client()
    c.login(username="admin", password="pw")
    return c


def run_worker(dsn: str, prefix: str, queue: Queue) -> list[Any]:
    async def main() -> list[Any]:
        async with Chancy(dsn, prefix=prefix, plugins=[], poll_reconnect_timeout=10) as worker_app:
            await worker_app.declare(queue, upsert=True)
            return await drain(worker_app, queues=[queue.name], raise_errors=False, timeout=60)

    return anyio.run(main)


def test_models_read_chancys_rows_under_the_custom_prefix(app: Chancy, django_prefix: str) -> None:
    from chancy.contrib.django.models import Job as JobRow
    from chancy.contrib.django.models import Queue as QueueRow

    assert JobRow._meta.db_table == f"{django_prefix}jobs"
    app.sync_declare(Queue("reports", concurrency=2), upsert=True)
    ref = app.sync_push(Job(func="myapp.jobs.report", queue="reports", kwargs={"n": 1}, priority=5))
    row = JobRow.objects.get(id=ref.identifier)
    assert (row.func, row.queue, row.kwargs, row.priority, row.state) == (
        "myapp.jobs.report",
        "reports",
        {"n": 1},
        5,
        "pending",
    )
    assert row.created_at is not None
    assert QueueRow.objects.get(name="reports").concurrency == 2


def test_app_from_databases_and_a_clear_error_for_another_engine(
    dsn: str, django_prefix: str
) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings
    from psycopg.conninfo import conninfo_to_dict

    from chancy.contrib.django import database_dsn
    from chancy.contrib.django.conf import build_app

    params = conninfo_to_dict(database_dsn())
    assert params["dbname"] == conninfo_to_dict(dsn)["dbname"]
    assert build_app().prefix == django_prefix
    sqlite = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x.db"}}
    with pytest.raises(ImproperlyConfigured, match="PostgreSQL"):
        database_dsn(databases=sqlite)
    with pytest.raises(ImproperlyConfigured, match="no 'other' entry"):
        database_dsn("other")
    from chancy._appref import load_app

    # what chancy-supervisor --app chancy.contrib.django.conf:build_app loads (docs/django.md)
    assert load_app("chancy.contrib.django.conf:build_app").prefix == django_prefix
    with override_settings(CHANCY={"dsn": "postgresql://elsewhere/db", "prefix": "p_"}):
        made = build_app()
        assert made.prefix == "p_"


def test_admin_changelist_renders_read_only_with_filters(app: Chancy, client: Any) -> None:
    app.sync_push(Job(func="myapp.jobs.alpha", queue="q1"))
    app.sync_push(Job(func="myapp.jobs.beta", queue="q2"))
    page = client.get("/admin/chancy/job/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "myapp.jobs.alpha" in html
    assert "myapp.jobs.beta" in html
    for name in ("queue", "state", "func"):
        assert f"?{name}=" in html or f"?{name}__exact=" in html
    for action in ("retry_jobs", "cancel_jobs", "purge_jobs"):
        assert f'value="{action}"' in html
    assert "delete_selected" not in html
    filtered = client.get("/admin/chancy/job/", {"queue": "q1"}).content.decode()
    assert 'field-func">myapp.jobs.alpha<' in filtered
    assert 'field-func">myapp.jobs.beta<' not in filtered  # (still offered by the func filter)
    assert client.get("/admin/chancy/job/add/").status_code == 403
    for url in ("/admin/chancy/queue/", "/admin/chancy/worker/"):
        assert client.get(url).status_code == 200


def _act(client: Any, action: str, ids: list[str]) -> Any:
    return client.post(
        "/admin/chancy/job/", {"action": action, "index": 0, "_selected_action": ids}, follow=True
    )


def test_admin_actions_call_the_operator_api(app: Chancy, client: Any) -> None:
    from chancy.contrib.django.models import Job as JobRow

    waiting = app.sync_push(Job(func="myapp.jobs.a")).identifier
    done = app.sync_push(Job(func="myapp.jobs.b")).identifier
    with app.sync_pool.connection() as conn:
        conn.execute(
            app.tables.q("UPDATE {jobs} SET state = 'failed', completed_at = now() WHERE id = %s"),
            (done,),
        )
    page = _act(client, "retry_jobs", [done])
    assert "Retried 1 job(s)" in page.content.decode()
    assert JobRow.objects.get(id=done).state == "pending"

    _act(client, "cancel_jobs", [waiting])
    assert JobRow.objects.get(id=waiting).state == "failed"

    page = _act(client, "purge_jobs", [waiting, done])
    assert "Purged 2 job(s)" in page.content.decode()
    assert not JobRow.objects.filter(id__in=[waiting, done]).exists()


def test_manage_py_chancy_forwards_to_the_cli(app: Chancy) -> None:
    from django.core.management import CommandError, call_command

    app.sync_declare(Queue("from-django"), upsert=True)
    out = io.StringIO()
    call_command("chancy", "queue", "list", stdout=out)
    assert "from-django" in out.getvalue()
    with pytest.raises(CommandError, match="status"):
        call_command(
            "chancy", "job", "get", "not-a-uuid", stdout=io.StringIO(), stderr=io.StringIO()
        )


def test_tasks_backend_enqueues_and_a_worker_runs_it(
    app: Chancy, dsn: str, django_prefix: str
) -> None:
    from django_project import tasks
    from django_tasks import TaskResultStatus, default_task_backend
    from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist

    later = datetime.now(UTC) + timedelta(hours=1)
    result = tasks.add.enqueue(2, b=3)
    assert result.status == TaskResultStatus.READY
    assert result.kwargs == {"a": 2, "b": 3}
    urgent = tasks.add.using(priority=10).enqueue(a=1)
    deferred = tasks.add.using(run_after=later).enqueue(1)
    product = anyio.run(lambda: tasks.async_mul.aenqueue(6, 7))
    failing = tasks.boom.enqueue()
    job = app.sync_get_job(deferred.id)
    assert job is not None
    assert abs((job.scheduled_at - later).total_seconds()) < 1
    assert app.sync_get_job(urgent.id).priority == 10  # type: ignore[union-attr]
    assert app.sync_get_job(result.id).queue == "django"  # type: ignore[union-attr]

    run_worker(dsn, django_prefix, Queue("django", executor=THREADED, concurrency=2))

    got = tasks.add.get_result(result.id)
    assert got.status == TaskResultStatus.SUCCESSFUL
    assert got.return_value == 5
    assert got.finished_at is not None
    assert got.attempts == 1
    assert anyio.run(lambda: tasks.async_mul.aget_result(product.id)).return_value == 42
    result.refresh()
    assert result.return_value == 5
    bad = default_task_backend.get_result(failing.id)
    assert bad.status == TaskResultStatus.FAILED
    assert bad.errors[0].exception_class is ValueError
    assert "boom" in bad.errors[0].traceback
    assert default_task_backend.get_result(deferred.id).status == TaskResultStatus.READY
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("00000000-0000-0000-0000-000000000000")
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("nope")
    with pytest.raises(InvalidTaskError, match="not valid"):
        tasks.add.using(queue_name="elsewhere").enqueue(1)


@pytest.mark.slow
def test_process_children_use_the_orm_after_the_initializer(
    app: Chancy, dsn: str, django_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.contrib.auth.models import User
    from django_project import tasks
    from django_tasks import TaskResultStatus

    result = tasks.count_users.enqueue()
    # The children inherit the (scrubbed) environment: DJANGO_SETTINGS_MODULE is not scrubbed.
    for name, value in _env(dsn, django_prefix).items():
        monkeypatch.setenv(name, value)
    queue = Queue(
        "django", concurrency=1, executor_options={"initializer": "chancy.contrib.django:setup"}
    )
    run_worker(dsn, django_prefix, queue)
    got = tasks.count_users.get_result(result.id)
    assert got.status == TaskResultStatus.SUCCESSFUL, got.errors
    assert got.return_value == User.objects.count()


def test_actions_need_the_change_permission(app: Chancy, django_prefix: str) -> None:
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    from chancy.contrib.django.models import Job as JobRow

    viewer, _ = User.objects.get_or_create(username="viewer", defaults={"is_staff": True})
    viewer.set_password("pw")
    viewer.save()
    viewer.user_permissions.set([Permission.objects.get(codename="view_job")])
    client = Client()
    client.login(username="viewer", password="pw")
    ref = app.sync_push(Job(func="myapp.jobs.kept"))
    html = client.get("/admin/chancy/job/").content.decode()
    assert "myapp.jobs.kept" in html
    assert 'value="purge_jobs"' not in html
    _act(client, "purge_jobs", [ref.identifier])
    assert JobRow.objects.filter(id=ref.identifier).exists()
