"""An opt-in allow-list of the job functions a worker may import and run.

A job row names its function by a dotted path, and a worker imports whatever that path says:
whoever can write the jobs table can run code in every worker (`os.system` is a dotted path
too). With an allow-list, a job whose `func` is not allowed fails permanently, with a clear
error, before anything is imported. It is checked on the path string alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chancy.errors import JobNotAllowed as JobNotAllowed
from chancy.job import registered_functions

if TYPE_CHECKING:
    from collections.abc import Iterable


class AllowList:
    """Allow functions under module `prefixes` and/or (`registered=True`) every function
    decorated with `@job` in a module the worker process has imported."""

    def __init__(self, prefixes: Iterable[str] = (), *, registered: bool = False) -> None:
        self.prefixes = tuple(p.replace(":", ".").rstrip(".") for p in prefixes)
        if any(not p for p in self.prefixes):
            raise ValueError("AllowList: empty module prefix")
        self.registered = registered

    def __repr__(self) -> str:
        return f"AllowList({list(self.prefixes)!r}, registered={self.registered})"

    def permits(self, func: str) -> bool:
        """Whether the dotted path `func` may be imported and run."""
        path = func.replace(":", ".")
        if self.registered and path in registered_functions():
            return True
        return any(path == p or path.startswith(p + ".") for p in self.prefixes)

    def check(self, func: str) -> None:
        """Raise `JobNotAllowed` unless `func` is allowed."""
        if not self.permits(func):
            allowed = [*(f"{p}.*" for p in self.prefixes)]
            if self.registered:
                allowed.append("@job-registered functions")
            raise JobNotAllowed(
                f"job function {func!r} is not in this worker's allow-list "
                f"({', '.join(allowed) or 'nothing'}); it was not imported"
            )
