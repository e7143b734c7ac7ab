"""The Chancy app of a Django project, from its settings.

``settings.CHANCY`` (optional) is a dict: ``dsn`` (a libpq URL or conninfo; default: built
from ``DATABASES["default"]``), ``prefix`` (default ``"chancy_"``) and ``options`` (more
keyword arguments for `Chancy`).
"""

from __future__ import annotations

import functools
from typing import Any

from chancy.app import Chancy

DEFAULT_PREFIX = "chancy_"


def app_settings() -> dict[str, Any]:
    """``settings.CHANCY`` (an empty dict when unset); raises ImproperlyConfigured if not a dict."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    value = getattr(settings, "CHANCY", None) or {}
    if not isinstance(value, dict):
        raise ImproperlyConfigured("settings.CHANCY: expected a dict such as {'prefix': 'chancy_'}")
    unknown = set(value) - {"dsn", "prefix", "options"}
    if unknown:
        raise ImproperlyConfigured(f"settings.CHANCY: unknown key(s) {sorted(unknown)}")
    return dict(value)


def prefix() -> str:
    """The table prefix of the project's Chancy tables."""
    value = app_settings().get("prefix", DEFAULT_PREFIX)
    if not isinstance(value, str) or not value:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("settings.CHANCY['prefix']: expected a non-empty string")
    return value


def database_dsn(alias: str = "default", *, databases: dict[str, Any] | None = None) -> str:
    """A libpq conninfo string for Django's database `alias` (PostgreSQL only) of
    ``settings.DATABASES`` (or of `databases`)."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from psycopg.conninfo import make_conninfo

    if databases is None:
        databases = getattr(settings, "DATABASES", None) or {}
    if alias not in databases:
        raise ImproperlyConfigured(
            f"Chancy: DATABASES has no {alias!r} entry; set settings.CHANCY = {{'dsn': ...}}"
        )
    db = databases[alias]
    engine = str(db.get("ENGINE", ""))
    if "postgresql" not in engine and "postgis" not in engine:
        raise ImproperlyConfigured(
            f"Chancy needs PostgreSQL: DATABASES[{alias!r}]['ENGINE'] is {engine!r}; point "
            "settings.CHANCY['dsn'] at a PostgreSQL database instead"
        )
    params: dict[str, Any] = {}
    for key, name in (
        ("NAME", "dbname"),
        ("USER", "user"),
        ("PASSWORD", "password"),
        ("HOST", "host"),
        ("PORT", "port"),
    ):
        if db.get(key):
            params[name] = str(db[key])
    # Django-only OPTIONS (the pool, server-side binding, ...) are not libpq parameters.
    django_only = ("pool", "server_side_binding", "isolation_level", "assume_role")
    params.update({k: v for k, v in (db.get("OPTIONS") or {}).items() if k not in django_only})
    return make_conninfo(**params)


def build_app() -> Chancy:
    """A new `Chancy` app from the settings (see the module docs)."""
    config = app_settings()
    dsn = config.get("dsn") or database_dsn()
    options = dict(config.get("options") or {})
    return Chancy(dsn, prefix=prefix(), **options)


@functools.cache
def get_app() -> Chancy:
    """The project's `Chancy` app, built from the settings once per process (the admin actions
    and the tasks backend use it; its sync pool opens on first use)."""
    return build_app()
