"""Jobs of the dashboard tests."""

from __future__ import annotations

import os
import time


def add(a: int, b: int) -> int:
    return a + b


def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


def fragile(marker: str) -> str:
    """Fails until the file `marker` exists (the test creates it, then retries the job)."""
    if not os.path.exists(marker):
        raise ConnectionError(f"the mail server is down (no {os.path.basename(marker)})")
    return "delivered"


def broken(order: int) -> None:
    raise ValueError(f"order {order} has no lines")
