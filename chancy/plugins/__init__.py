"""Built-in plugins."""

from chancy.plugin import Plugin


def default_plugins() -> list[Plugin]:
    """The plugins an app runs when it is given `plugins=None`."""
    return []
