"""The environment a child worker process starts with.

Rule: the child gets the supervisor's environment *minus* anything that could reach the
database or look like a secret. A variable is dropped when its name (case-insensitive)

* is ``CHANCY_DSN``, ``CHANCY_TEST_DSN`` or ``DATABASE_URL``, or ends with ``_DSN``;
* starts with ``PG`` (libpq's ``PGHOST``, ``PGPASSWORD``, ``PGSERVICE``, ...);
* contains ``PASSWORD``, ``PASSWD``, ``SECRET``, ``TOKEN``, ``KEY`` or ``CREDENTIAL``.

Jobs that need such a value must get it another way (a file, the initializer, ``extra``
below, which the operator sets explicitly). ``PYTHONPATH`` is set to the supervisor's
``sys.path`` (``""`` becomes the current directory; the child runs with ``-P``, so nothing
is put in front), so the child imports the same ``chancy`` as the supervisor before the
handshake hands it the exact ``sys.path``; ``PYTHONUNBUFFERED`` makes a job's output reach
the log line by line.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

_DROP_EXACT = frozenset({"CHANCY_DSN", "CHANCY_TEST_DSN", "DATABASE_URL"})
_DROP_PARTS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL")


def is_secret(name: str) -> bool:
    """Whether the variable *name* is withheld from child processes (see module docs)."""
    upper = name.upper()
    return (
        upper in _DROP_EXACT
        or upper.endswith("_DSN")
        or upper.startswith("PG")
        or any(part in upper for part in _DROP_PARTS)
    )


def child_environment(
    sys_path: list[str],
    *,
    base: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The scrubbed environment for a new child, plus *extra* (not scrubbed)."""
    source = os.environ if base is None else base
    env = {name: value for name, value in source.items() if not is_secret(name)}
    env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys_path)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONSTARTUP", None)
    if extra:
        env.update(extra)
    return env
