"""Exceptions of the supervisor, and those raised *inside* a job that is asked to stop."""

from __future__ import annotations


class JobStopped(BaseException):
    """Raised inside a running job that the supervisor asked to stop.

    It derives from :class:`BaseException` (like ``KeyboardInterrupt``) so that a plain
    ``except Exception`` in job code does not swallow it. A job that swallows it anyway is
    killed after a short grace.
    """


class TimeLimitExceeded(JobStopped):
    """The job ran past its ``Limit.Type.TIME`` limit."""


class JobCancelled(JobStopped):
    """The job was cancelled (``cancel_job``)."""


class ChildStartError(RuntimeError):
    """A child worker process could not be started or failed its handshake."""


class PoolClosed(RuntimeError):
    """The pool is not running (not entered yet, or shutting down)."""
