"""A job's return value as it is stored in the job's `result` column.

Shared by every executor, and by the process executor's child (so it imports nothing but
msgspec and the standard library). A result is stored when it is JSON: `None`, `bool`, `int`,
finite `float`, `str`, and `dict` (keys `str`, `int` or `float`), `list` and `tuple` of those,
nested. Anything else (a set, bytes, a datetime, an object) is refused rather than converted,
so what is read back is what the function returned (tuples come back as lists, number keys
as strings, and NUL characters, which PostgreSQL's jsonb cannot hold, as U+FFFD). The size
is that of the compact UTF-8 JSON text, capped by the queue's `max_result_size`.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from chancy.errors import ResultError as ResultError

#: The default `max_result_size` executor option: 1 MiB of JSON.
DEFAULT_MAX_RESULT_SIZE = 1024 * 1024

_SCALARS = (str, int, float)
_KEYS = (str, int, float)


def format_size(size: int) -> str:
    """A byte count for a message: '512 bytes', '3.5 KiB', '2.0 MiB'."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MiB"
    if size >= 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size} bytes"


def check_max_result_size(value: Any) -> int:
    """Validate the `max_result_size` executor option (a positive number of bytes)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"max_result_size: expected a positive number of bytes, got {value!r}")
    return value


def _path(steps: list[Any]) -> str:
    return "".join(f"[{step!r}]" for step in steps)


def _problem(value: Any) -> tuple[str, list[Any]] | None:
    """What in `value` is not JSON, and where (a path of keys and indexes); None if all is."""
    stack: list[tuple[Any, list[Any]]] = [(value, [])]
    while stack:
        item, steps = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, _SCALARS):
            if isinstance(item, float) and not math.isfinite(item):
                return f"the float {item!r}", steps
            continue
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, bool) or not isinstance(key, _KEYS):
                    return f"a key of type {type(key).__name__}", steps
                if isinstance(key, float) and not math.isfinite(key):
                    return f"the key {key!r}", steps
                if not (child is None or type(child) in (str, int, bool)):
                    stack.append((child, [*steps, key]))
            continue
        if isinstance(item, list | tuple):
            for index, child in enumerate(item):
                if not (child is None or type(child) in (str, int, bool)):
                    stack.append((child, [*steps, index]))
            continue
        return f"a value of type {type(item).__name__}", steps
    return None


def _subclass_hook(obj: Any) -> Any:
    """msgspec's hook for what it does not encode itself: subclasses of str, int, float."""
    for base in (str, int, float):
        if isinstance(obj, base):
            return base(obj)
    raise TypeError(f"Encoding objects of type {type(obj).__name__} is unsupported")


def without_nul(value: Any) -> Any:
    """PostgreSQL's jsonb refuses NUL characters: they become U+FFFD (at any depth)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(v) for v in value]
    return value


def encode_result(value: Any, max_size: int | None = None) -> bytes:
    """The JSON text of a job's return value (UTF-8), or `ResultError` saying why not.

    `max_size` is the queue's `max_result_size` in bytes (None: no cap).
    """
    problem = _problem(value)
    if problem is not None:
        what, steps = problem
        message = f"result of type {type(value).__name__} is not JSON-serialisable"
        if steps:
            message += f": it holds {what} at {_path(steps)}"
        elif what.startswith("the float"):
            message += f" ({value!r})"
        elif what.startswith(("a key", "the key")):
            message += f": it holds {what}"
        raise ResultError(message)
    try:
        data = msgspec.json.encode(value, enc_hook=_subclass_hook)
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError: a lone surrogate in a str
        raise ResultError(
            f"result of type {type(value).__name__} is not JSON-serialisable: {exc}"
        ) from None
    if b"\\u0000" in data:
        data = msgspec.json.encode(without_nul(value), enc_hook=_subclass_hook)
    check_size(len(data), max_size)
    return data


def check_size(size: int, max_size: int | None) -> None:
    """`ResultError` if a result of `size` bytes of JSON is over `max_size`."""
    if max_size is not None and size > max_size:
        raise ResultError(
            f"result of {format_size(size)} exceeds the queue's max_result_size of "
            f"{format_size(max_size)}"
        )


def decode_result(data: bytes) -> Any:
    """A stored result's JSON text back to its value."""
    return msgspec.json.decode(data)
