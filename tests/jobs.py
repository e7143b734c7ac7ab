"""Job functions the tests push; importable by workers and child processes."""

from chancy.job import job


def noop() -> None:
    return None


def add(a: int, b: int) -> int:
    return a + b


@job(queue="default", priority=5)
def decorated(x: int = 1) -> int:
    return x * 2


def sends(to: str) -> str:
    """A job for tests/test_testing.py: records the call."""
    SENT.append(to)
    return f"sent to {to}"


async def async_sends(to: str) -> str:
    SENT.append(to)
    return f"sent to {to}"


def explodes(why: str) -> None:
    raise RuntimeError(f"exploded: {why}")


SENT: list[str] = []
