"""The admin: Chancy's tables read-only, and jobs operated through Chancy's operator API
(`Chancy.sync_retry_jobs`, `sync_cancel_job`, `sync_purge_jobs`), never by editing rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages

from chancy.contrib.django.conf import get_app
from chancy.contrib.django.models import Job, Queue, Worker

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django ships no type hints: its base is Any
    """No add, change or delete: the rows belong to Chancy."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _report(
    admin_: JobAdmin, request: HttpRequest, verb: str, done: int, skipped: dict[str, str]
) -> None:
    admin_.message_user(request, f"{verb} {done} job(s)", messages.SUCCESS)
    for job_id, reason in skipped.items():
        admin_.message_user(request, f"job {job_id} skipped: {reason}", messages.WARNING)


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "func",
        "queue",
        "state",
        "priority",
        "attempts",
        "scheduled_at",
        "completed_at",
    )
    list_filter = ("queue", "state", "func")
    search_fields = ("=id", "func", "unique_key")
    date_hierarchy = "created_at"
    actions = ("retry_jobs", "cancel_jobs", "purge_jobs")

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Who may run the actions: holders of ``chancy.change_job`` (superusers, say)."""
        return bool(request.user.has_perm("chancy.change_job"))

    @admin.action(description="Retry selected jobs (finished ones)", permissions=["operate"])  # type: ignore[untyped-decorator]  # untyped Django
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        ids = [str(i) for i in queryset.values_list("id", flat=True)]
        result = get_app().sync_retry_jobs(ids)
        _report(self, request, "retried", len(result.done), result.skipped)

    @admin.action(description="Cancel selected jobs", permissions=["operate"])  # type: ignore[untyped-decorator]  # untyped Django
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        app = get_app()
        ids = [str(i) for i in queryset.values_list("id", flat=True)]
        for job_id in ids:
            app.sync_cancel_job(job_id)
        _report(self, request, "cancelled", len(ids), {})

    @admin.action(description="Purge selected jobs (not running ones)", permissions=["operate"])  # type: ignore[untyped-decorator]  # untyped Django
    def purge_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        ids = [str(i) for i in queryset.values_list("id", flat=True)]
        result = get_app().sync_purge_jobs(ids)
        _report(self, request, "purged", len(result.done), result.skipped)


@admin.register(Queue)
class QueueAdmin(ReadOnlyAdmin):
    list_display = ("name", "state", "concurrency", "executor", "rate_limit", "resume_at")
    list_filter = ("state",)


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdmin):
    list_display = ("worker_id", "hostname", "pid", "queues", "last_seen", "expires_at")
