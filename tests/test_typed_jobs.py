"""Typed jobs: `@job` keeps the signature, and `.bind(...)` is checked by the type checker."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jobs
import pytest

from chancy import job

ROOT = Path(__file__).parent.parent

SAMPLE = """
from chancy import job


@job(queue="reports", max_attempts=3)
def send_report(user_id: int, fmt: str = "pdf") -> str:
    return f"{user_id}.{fmt}"


good = send_report.bind(42, fmt="csv")
wrong_keyword = send_report.bind(user_id=42, format="csv")
wrong_type = send_report.bind("42")
called: str = send_report(7)
"""


def test_the_type_checker_rejects_a_wrong_bind(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is in the test extra")
    (tmp_path / "reports.py").write_text(textwrap.dedent(SAMPLE))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "reports.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "MYPYPATH": str(ROOT)},
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 2, result.stdout
    assert 'reports.py:11: error: Unexpected keyword argument "format" for "bind"' in errors[0]
    assert (
        'reports.py:12: error: Argument 1 to "bind" of "IsAJob" has incompatible type "str"; expected "int"'
        in errors[1]
    )


def test_bind_builds_the_job_with_keyword_arguments() -> None:
    send = job(queue="mail")(jobs.sends)
    made = send.bind("ada@example.com")
    assert made.func == "jobs.sends"
    assert made.queue == "mail"
    assert made.kwargs == {"to": "ada@example.com"}
    with pytest.raises(TypeError, match=r"jobs.sends.bind: got an unexpected keyword argument"):
        send.bind(email="x")
