"""Chancy in a Django project (extra ``django``): ``INSTALLED_APPS += ["chancy.contrib.django"]``.

* `chancy.contrib.django.models`: unmanaged models over Chancy's ``jobs``, ``queues`` and
  ``workers`` tables (the prefix of ``settings.CHANCY["prefix"]``, default ``"chancy_"``),
  shown read-only in the admin with retry / cancel / purge actions.
* `get_app()`: the `Chancy` app built from the settings (``CHANCY["dsn"]``, else
  ``DATABASES["default"]``, which must be PostgreSQL).
* ``manage.py chancy ...``: Chancy's command line with that app.
* `setup`: the process executor's ``initializer`` so that job functions can use the ORM.
* `chancy.contrib.django.tasks.ChancyBackend`: a ``django-tasks`` backend.

See docs/django.md.
"""

from __future__ import annotations

from chancy.contrib.django.conf import app_settings, database_dsn, get_app

__all__ = ["app_settings", "database_dsn", "get_app", "setup"]


def setup() -> None:
    """Run ``django.setup()``: the process executor's initializer for Django jobs
    (``Queue(executor_options={"initializer": "chancy.contrib.django:setup"})``). The child
    needs ``DJANGO_SETTINGS_MODULE`` (it is not scrubbed from its environment)."""
    import django

    django.setup()
