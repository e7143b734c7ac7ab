"""Job functions for the quickstart. Jobs live in an importable module, never in __main__."""

import asyncio

from chancy import QueuedJob, job


@job(queue="default", max_attempts=3)
def greet(name: str, *, job: QueuedJob) -> str:
    """Runs in a supervised child process (the default executor)."""
    print(f"Hello, {name}! (attempt {job.attempts})")
    return name


@job(queue="io")
async def fetch(url: str) -> None:
    """Runs on the worker's event loop (the async executor)."""
    await asyncio.sleep(0.1)
    print(f"fetched {url}")
