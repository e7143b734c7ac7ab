"""Every name in `chancy.__all__` is the documented object whatever was imported first.

A fresh interpreter (a subprocess that has imported nothing of chancy) forks once per "first"
import: an exported name (`from chancy import X`) or a submodule (`import chancy.sub`). That
copy imports it, then forks once per exported name and checks, in that copy, that
`from chancy import name` and `chancy.name` give the object defined in the module that
documents it (never a submodule). Only third-party and standard modules are preloaded in the
interpreter that forks. So every ordered pair (first, name) is tested exactly, each
from an interpreter where chancy was never imported, without starting one interpreter per pair.
The exported names are also each tried first in an interpreter of their own, as a user would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import chancy

PACKAGE = Path(chancy.__file__).parent


#: Modules that only import in a configured Django project (models and the admin need the app
#: registry); tests/test_django.py imports them there.
NEEDS_DJANGO = {"chancy.contrib.django.models", "chancy.contrib.django.admin"}


def _submodules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if ".".join(parts) not in NEEDS_DJANGO:
            names.append(".".join(parts))
    return names


SUBMODULES = _submodules()
FIRSTS = [f"from chancy import {name}" for name in chancy.__all__] + [
    f"import {module}" for module in SUBMODULES
]

CHECK = r"""
import os, sys, types

def check(FIRST):
    exec(FIRST, {})
    import chancy
    failures = []
    for name in chancy.__all__:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            problem = ""
            try:
                namespace = {}
                exec(f"from chancy import {name} as value", namespace)
                value = namespace["value"]
                home = sys.modules[chancy._EXPORTS[name]]
                expected = vars(home)[name]
                if isinstance(value, types.ModuleType):
                    problem = f"from chancy import {name} gave the module {value.__name__}"
                elif value is not expected:
                    problem = f"from chancy import {name} gave {value!r}, not {expected!r}"
                elif getattr(chancy, name) is not expected:
                    problem = f"chancy.{name} is {getattr(chancy, name)!r}, not {expected!r}"
            except BaseException as exc:
                problem = f"{name}: {type(exc).__name__}: {exc}"
            os.write(w, problem.encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as pipe:
            problem = pipe.read().decode()
        os.waitpid(pid, 0)
        if problem:
            failures.append(f"{FIRST}; then {problem}")
    # and all of them in this process too, in __all__ order, then with a star import
    star = {}
    exec("from chancy import *", star)
    for name in chancy.__all__:
        expected = vars(sys.modules[chancy._EXPORTS[name]])[name]
        if star[name] is not expected or getattr(chancy, name) is not expected:
            failures.append(f"{FIRST}; then from chancy import *: {name} is {star[name]!r}")
    return failures

def run(firsts):
    # Third-party and standard modules do not take part in the name clash: load them once here
    # so that each fork only imports chancy's own modules.
    for name in ("asyncio", "argparse", "logging", "json", "dataclasses", "inspect", "uuid",
                 "secrets", "anyio", "psycopg", "psycopg_pool", "psutil", "msgspec"):
        try:
            __import__(name)
        except ImportError:
            pass
    failures = []
    for first in firsts:
        if "chancy" in sys.modules:
            raise SystemExit("chancy imported before the first import")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                text = "\n".join(check(first))
            except BaseException as exc:
                text = f"{first}: {type(exc).__name__}: {exc}"
            os.write(w, text.encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as pipe:
            text = pipe.read().decode()
        os.waitpid(pid, 0)
        if text:
            failures.append(text)
    print("\n".join(failures))
    sys.exit(1 if failures else 0)

run(sys.argv[1:])
"""


def _run(firsts: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK, *firsts], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_exports_whatever_was_imported_first() -> None:
    _run(FIRSTS)


@pytest.mark.parametrize("name", ["Chancy", "Queue", "Worker", "job"])
def test_exports_in_a_fresh_interpreter(name: str) -> None:
    _run([f"from chancy import {name}"])


def test_import_order_covers_the_job_submodule() -> None:
    # the case of the issue: chancy.job imported (by chancy.app) before the decorator
    assert "from chancy import Chancy" in FIRSTS
    assert "import chancy.job" in FIRSTS


def test_child_start_up_imports_neither_psycopg_nor_anyio() -> None:
    code = (
        "import sys, chancy.supervisor.child; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'anyio')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
