"""Built-in plugins, one module each: leadership, recovery, retry, pruner, cron.

With `Chancy(plugins=None)` an app runs `default_plugins()`: leadership, recovery and pruning
with safe defaults. An explicit list replaces that set::

    Chancy(dsn, plugins=[*default_plugins(), Retry(base=2), Cron()])
"""

from chancy.plugin import Plugin
from chancy.plugins.leadership import Leadership
from chancy.plugins.pruner import Pruner
from chancy.plugins.recovery import Recovery
from chancy.plugins.retry import Retry


def default_plugins() -> list[Plugin]:
    """The plugins an app runs when it is given `plugins=None`: leadership, recovery, pruning."""
    return [Leadership(), Recovery(), Pruner()]


def __getattr__(name: str) -> object:
    # Cron needs croniter (the `cron` extra), so it is imported on first use.
    if name == "Cron":
        from chancy.plugins.cron import Cron

        return Cron
    raise AttributeError(f"module 'chancy.plugins' has no attribute {name!r}")


__all__ = ["Cron", "Leadership", "Plugin", "Pruner", "Recovery", "Retry", "default_plugins"]
