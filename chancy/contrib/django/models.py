"""Unmanaged models over Chancy's own tables (Django never creates, alters or drops them:
``chancy ... misc migrate`` does). The table names carry ``settings.CHANCY["prefix"]``."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models

from chancy.contrib.django.conf import prefix

_PREFIX = prefix()


class Job(models.Model):  # type: ignore[misc]  # Django ships no type hints: its base is Any
    """One row of ``<prefix>jobs``."""

    class State(models.TextChoices):  # type: ignore[misc]  # Django ships no type hints: its base is Any
        PENDING = "pending"
        RUNNING = "running"
        RETRYING = "retrying"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True)
    queue = models.TextField()
    func = models.TextField()
    kwargs = models.JSONField(default=dict)
    priority = models.IntegerField(default=0)
    max_attempts = models.IntegerField(default=1)
    attempts = models.IntegerField(default=0)
    state = models.TextField(choices=State.choices, default=State.PENDING)
    scheduled_at = models.DateTimeField()
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True)
    completed_at = models.DateTimeField(null=True)
    limits = models.JSONField(default=list)
    meta = models.JSONField(default=dict)
    errors = models.JSONField(default=list)
    unique_key = models.TextField(null=True)
    taken_by = models.TextField(null=True)
    cancel_requested = models.BooleanField(default=False)
    result = models.JSONField(null=True)

    class Meta:
        managed = False
        db_table = f"{_PREFIX}jobs"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.func} ({self.state}) {self.id}"


class Queue(models.Model):  # type: ignore[misc]  # Django ships no type hints: its base is Any
    """One row of ``<prefix>queues``."""

    name = models.TextField(primary_key=True)
    concurrency = models.IntegerField()
    tags = ArrayField(models.TextField())
    state = models.TextField()
    executor = models.TextField()
    executor_options = models.JSONField(default=dict)
    polling_interval = models.FloatField()
    rate_limit = models.IntegerField(null=True)
    rate_limit_window = models.IntegerField(null=True)
    resume_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = f"{_PREFIX}queues"
        ordering = ("name",)

    def __str__(self) -> str:
        return str(self.name)


class Worker(models.Model):  # type: ignore[misc]  # Django ships no type hints: its base is Any
    """One row of ``<prefix>workers``."""

    worker_id = models.TextField(primary_key=True)
    incarnation = models.TextField()
    hostname = models.TextField()
    pid = models.IntegerField()
    tags = ArrayField(models.TextField())
    queues = ArrayField(models.TextField())
    queue_status = models.JSONField(default=dict)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = f"{_PREFIX}workers"
        ordering = ("worker_id",)

    def __str__(self) -> str:
        return str(self.worker_id)
