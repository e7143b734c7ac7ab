"""Log formats of `chancy-supervisor` (`--log-format plain|json`).

`plain`: `time level logger: message`, on every line, Chancy's and its libraries' (psycopg,
psycopg_pool) alike. `json`: one JSON object per line with `time` (ISO 8601, UTC), `level`,
`logger` and `message`, plus `job_id`, `queue`, `func`, `attempt`, `worker_id` and `child_pid`
when the record carries them (as `extra=`), and `exc` with the traceback of an exception.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Record attributes copied into a JSON line when present.
FIELDS = ("job_id", "queue", "func", "attempt", "worker_id", "child_pid")
FORMATS = ("plain", "json")


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = _jsonable(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False)


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "plain":
        return logging.Formatter(PLAIN)
    raise ValueError(f"unknown log format {fmt!r}: expected one of {', '.join(FORMATS)}")


def configure(fmt: str, level: int, app_logger: logging.Logger | None = None) -> None:
    """Route every log record (Chancy's and its libraries') through one stderr handler with
    the chosen format: the handler goes on the root logger (unless the app installed root
    handlers: those get the format instead), `chancy`'s default console handler is removed
    (its records propagate to the root), and the root logger's level is WARNING unless it was
    set lower."""
    formatter = make_formatter(fmt)
    root = logging.getLogger()
    chancy = logging.getLogger("chancy")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler._chancy_supervisor = True  # type: ignore[attr-defined]
    for old in list(root.handlers):
        if getattr(old, "_chancy_supervisor", False):
            root.removeHandler(old)
    users = bool(root.handlers)
    for old in list(chancy.handlers):
        if getattr(old, "_chancy_default", False):
            chancy.removeHandler(old)
    # Handlers the user's app installed keep working; only give them the format.
    for logger in (root, chancy, app_logger):
        if logger is None:
            continue
        for existing in logger.handlers:
            existing.setFormatter(formatter)
    if not users:
        root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    chancy.setLevel(level)
    if app_logger is not None:
        app_logger.setLevel(level)
