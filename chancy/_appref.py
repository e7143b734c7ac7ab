"""Load the `Chancy` app named by `--app module:attribute` (shared by both CLIs)."""

from __future__ import annotations

import importlib
import inspect
import os
import sys

from chancy.app import Chancy
from chancy.errors import AppRefError as AppRefError


def load_app(spec: str | None) -> Chancy:
    """Import `module:attribute` (or `module.attribute`); the attribute is a `Chancy` or a callable returning one."""
    spec = spec or os.environ.get("CHANCY_APP")
    if not spec:
        raise AppRefError("no app given: pass --app module:attribute (or set CHANCY_APP)")
    module_name, sep, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
    if not sep or not module_name or not attr:
        raise AppRefError(
            f"--app {spec!r}: expected module:attribute, e.g. myproject.worker:chancy"
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppRefError(f"--app {spec!r}: cannot import {module_name!r}: {exc}") from None
    target: object = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppRefError(
                f"--app {spec!r}: {module_name!r} has no attribute {attr!r}"
            ) from None
    if not isinstance(target, Chancy) and callable(target):
        try:
            inspect.signature(target).bind()
        except TypeError:
            raise AppRefError(
                f"--app {spec!r}: {attr!r} is a callable that needs arguments; name the Chancy "
                "instance (e.g. myproject.worker:chancy) or a factory that takes none"
            ) from None
        except ValueError:  # no signature to inspect (a builtin): just try it
            pass
        made = target()
        if not isinstance(made, Chancy):
            raise AppRefError(
                f"--app {spec!r}: {attr!r}() returned {type(made).__name__}, not a Chancy app"
            )
        target = made
    if not isinstance(target, Chancy):
        raise AppRefError(
            f"--app {spec!r}: {attr!r} is not a Chancy app (got {type(target).__name__})"
        )
    return target
