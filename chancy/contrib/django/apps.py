"""The Django app config of `chancy.contrib.django`."""

from __future__ import annotations

from django.apps import AppConfig


class ChancyConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints: its base is Any
    name = "chancy.contrib.django"
    label = "chancy"
    verbose_name = "Chancy"
    default_auto_field = "django.db.models.BigAutoField"
