"""``manage.py chancy ...``: Chancy's command line (`chancy.cli`) with the project's app.

``manage.py chancy misc migrate``, ``manage.py chancy queue list --json``, ...
"""

from __future__ import annotations

import argparse
import contextlib
import io
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

#: The factory `chancy.cli` loads: a new app from the settings for each command.
APP_REF = "chancy.contrib.django.conf:build_app"


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type hints: its base is Any
    help = "Run Chancy's command line (chancy --help) with the app built from settings.CHANCY."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for chancy")

    def handle(self, *args: str, **options: Any) -> None:
        from chancy.cli import main

        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["--app", APP_REF, *args])
        except SystemExit as exc:  # argparse: --help, or a usage error
            code = exc.code if isinstance(exc.code, int) else 2
        self.stdout.write(out.getvalue(), ending="")
        self.stderr.write(err.getvalue(), ending="")
        if code:
            raise CommandError(f"chancy exited with status {code}", returncode=code)
