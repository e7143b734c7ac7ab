"""Built-in plugins, one module each: leadership, recovery, retry, pruner, cron.

With `Chancy(plugins=None)` an app runs `default_plugins()`: leadership, recovery and pruning
with safe defaults. An explicit list replaces that set::

    Chancy(dsn, plugins=[*default_plugins(), Retry(base=2), Cron()])

The cron plugin needs `croniter` (the ``cron`` extra) only when a schedule is evaluated.
"""

from chancy.plugin import Plugin
from chancy.plugins.cron import Cron
from chancy.plugins.leadership import Leadership
from chancy.plugins.pruner import Pruner
from chancy.plugins.recovery import Recovery
from chancy.plugins.retry import Retry


def default_plugins() -> list[Plugin]:
    """The plugins an app runs when it is given `plugins=None`: leadership, recovery, pruning."""
    return [Leadership(), Recovery(), Pruner()]


__all__ = ["Cron", "Leadership", "Plugin", "Pruner", "Recovery", "Retry", "default_plugins"]
