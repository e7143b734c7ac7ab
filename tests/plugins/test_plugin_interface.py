"""The plugin interface: identifiers, dependencies, defaults and plugin migrations."""

from __future__ import annotations

import pytest

from chancy import Chancy
from chancy.plugin import Plugin, check_plugins
from chancy.plugins import Leadership, Pruner, Recovery, Retry, default_plugins
from chancy.plugins.cron import Cron

pytestmark = pytest.mark.anyio


class Named(Plugin):
    identifier = "named"


def test_default_plugins_are_leadership_recovery_pruning(dsn: str) -> None:
    app = Chancy(dsn)
    assert [type(p) for p in app.plugins] == [Leadership, Recovery, Pruner]
    assert [p.identifier for p in default_plugins()] == ["leadership", "recovery", "pruner"]
    assert Recovery.leader_only
    assert Pruner.leader_only
    assert not Leadership.leader_only


def test_explicit_list_replaces_defaults(dsn: str) -> None:
    assert Chancy(dsn, plugins=[]).plugins == []
    app = Chancy(dsn, plugins=[Retry()])
    assert [p.identifier for p in app.plugins] == ["retry"]


def test_duplicates_and_missing_dependencies_are_refused(dsn: str) -> None:
    with pytest.raises(ValueError, match="duplicate plugin identifier 'named'"):
        Chancy(dsn, plugins=[Named(), Named()])
    with pytest.raises(ValueError, match="'recovery' needs 'leadership'"):
        check_plugins([Recovery()])
    with pytest.raises(TypeError):
        check_plugins([object()])  # type: ignore[list-item]


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Leadership(poll_interval=10, timeout=5)
    with pytest.raises(ValueError, match="maximum_age"):
        Pruner(maximum_age=-1)
    with pytest.raises(ValueError, match="batch_size"):
        Recovery(batch_size=0)
    with pytest.raises(ValueError, match="jitter"):
        Retry(jitter=(5, 1))


async def test_plugin_migrations_are_migrated_and_counted(make_app) -> None:
    plain = await make_app(plugins=[])
    assert await plain.is_up_to_date()
    with_cron = Chancy(plain.dsn, prefix=plain.prefix, plugins=[Cron()])
    async with with_cron:
        assert not await with_cron.is_up_to_date()
        await with_cron.migrate()
        assert await with_cron.is_up_to_date()
        versions = await with_cron.schema_versions()
        assert versions["plugin:cron"] == (1, 1)
        await with_cron.migrate(to_version=0)
        async with with_cron.db.connection() as conn:
            row = await conn.fetchone("SELECT to_regclass(%s)", (plain.prefix + "cron_schedules",))
        assert row == (None,)
