"""Stdlib-only jobs: importable inside an isolated sub-interpreter (3.13+)."""

import time


def ok() -> int:
    return 1


def not_json() -> set[int]:
    return {1, 2}


def bad() -> None:
    raise ValueError("nope")


def slow(seconds: float = 3) -> None:
    time.sleep(seconds)
