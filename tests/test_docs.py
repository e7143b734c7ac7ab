"""Every Python snippet of README.md and docs/*.md, run as a user would paste it.

A snippet runs in a fresh interpreter, in a folder of its own, against a database of its own,
with `dsn` (the name the docs use for "your PostgreSQL URL") set to it. An HTML comment on the
line before a fence, invisible when rendered, changes that:

* `<!-- doctest: module path/to/mod.py -->`: the block is that module of the user's project; it
  is written into the folder of every later snippet of the same file (and imported by them).
* `<!-- doctest: compile-only (reason) -->`: it cannot run alone; it is compiled (top-level
  `await` allowed) and every name it imports from `chancy` must exist.

Top-level `await` in a runnable snippet runs on asyncio.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_imports import NEEDS_DJANGO
from test_quickstart import fresh_dsn  # noqa: F401  (a fixture)

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(
    r"^(?:<!-- doctest: (?P<marker>[^\n]*?) -->\n)?```python\n(?P<code>.*?)^```$", re.S | re.M
)
RUNNER = """
import ast, asyncio, os, sys
source = open(sys.argv[1]).read()
code = compile(source, sys.argv[2], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
namespace = {"__name__": "__main__", "dsn": os.environ["CHANCY_DSN"]}
result = eval(code, namespace)
if asyncio.iscoroutine(result):
    asyncio.run(result)
"""


@dataclass
class Snippet:
    doc: Path
    line: int
    marker: str
    code: str
    modules: list[tuple[str, str]]  # (relative path, source) of earlier module blocks

    @property
    def name(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def snippets() -> list[Snippet]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        modules: list[tuple[str, str]] = []
        for match in FENCE.finditer(text):
            line = text[: match.start("code")].count("\n")
            marker, code = (match["marker"] or "").strip(), match["code"]
            found.append(Snippet(doc, line, marker, code, list(modules)))
            if marker.startswith("module "):
                modules.append((marker.removeprefix("module ").strip(), code))
    return found


SNIPPETS = snippets()


def test_markers_are_known_and_give_reasons() -> None:
    assert len(SNIPPETS) >= 10, "the snippet pattern no longer finds the docs' code blocks"
    for snippet in SNIPPETS:
        marker = snippet.marker
        if marker.startswith("compile-only"):
            assert re.fullmatch(r"compile-only \(.+\)", marker), f"{snippet.name}: give a reason"
        else:
            assert marker == "" or re.fullmatch(r"module [\w/]+\.py", marker), snippet.name


def chancy_imports(code: str) -> list[tuple[str, str]]:
    tree = ast.parse(code)
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "chancy"
        for alias in node.names
    ]


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: s.name)
def test_snippet_compiles_and_its_chancy_imports_exist(snippet: Snippet) -> None:
    compile(snippet.code, snippet.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    for module, name in chancy_imports(snippet.code):
        if module in NEEDS_DJANGO:  # importing it needs a configured project: read its source
            spec = importlib.util.find_spec(module)
            assert spec is not None, f"{snippet.name}: no module {module}"
            assert spec.origin is not None
            tree = ast.parse(Path(spec.origin).read_text())
            defined = {n.name for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef)}
            assert name in defined, f"{snippet.name}: `from {module} import {name}` fails"
            continue
        imported = importlib.import_module(module)
        assert hasattr(imported, name), f"{snippet.name}: `from {module} import {name}` fails"


@pytest.mark.parametrize(
    "snippet",
    [s for s in SNIPPETS if not s.marker.startswith("compile-only")],
    ids=lambda s: s.name,
)
def test_snippet_runs(snippet: Snippet, fresh_dsn: str, tmp_path: Path) -> None:  # noqa: F811
    for relative, source in snippet.modules + (
        [(snippet.marker.removeprefix("module ").strip(), snippet.code)]
        if snippet.marker.startswith("module ")
        else []
    ):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        for parent in path.relative_to(tmp_path).parents:
            if parent != Path("."):
                (tmp_path / parent / "__init__.py").touch()
    script = tmp_path / "snippet.py"
    if snippet.marker.startswith("module "):  # a module is imported, as its users do
        dotted = snippet.marker.removeprefix("module ").strip().removesuffix(".py")
        script.write_text(f"import {dotted.replace('/', '.')}")
    else:
        script.write_text(snippet.code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(CHANCY_DSN=fresh_dsn, PYTHONPATH=str(tmp_path))
    run = subprocess.run(
        [sys.executable, "-c", RUNNER, str(script), snippet.name],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"{snippet.name} failed:\n{run.stderr}"
