"""Executors: where a queue's jobs run (async, threaded, process, sub-interpreter).

Queues name their executor by import path (`Queue.executor`, see `Chancy.Executor`); the worker
loads it with `load_executor` and passes `Queue.executor_options` as keyword arguments.
"""

from chancy.errors import JobCancelled, RemoteJobError, TimeLimitExceeded
from chancy.executors.base import DEFAULT_RETRY_DELAY, Executor

__all__ = [
    "DEFAULT_RETRY_DELAY",
    "Executor",
    "JobCancelled",
    "RemoteJobError",
    "TimeLimitExceeded",
]
