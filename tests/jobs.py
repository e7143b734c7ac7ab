"""Job functions the tests push; importable by workers and child processes."""

from chancy.job import job


def noop() -> None:
    return None


def add(a: int, b: int) -> int:
    return a + b


@job(queue="default", priority=5)
def decorated(x: int = 1) -> int:
    return x * 2
