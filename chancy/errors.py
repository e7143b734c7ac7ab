"""Every exception Chancy raises or records, in one tree.

This module is a leaf: it imports nothing of Chancy, psycopg or anyio, so that anything
(the child process, the wire, a user's ``except`` clause) can import it cheaply.

Two roots:

* :class:`ChancyError` (an :class:`Exception`) for what goes wrong around a job: bad input,
  an unreachable database, a missing migration, a child that would not start.
* :class:`JobStopped` (a :class:`BaseException`, like ``KeyboardInterrupt``) for what is
  raised *inside* a running job that Chancy asks to stop, so that a job's own
  ``except Exception`` cannot swallow it.

The errors a job ends with (stored in ``QueuedJob.errors``, ``type`` field) are the names of
these classes: ``TimeLimitExceeded``, ``MemoryLimitExceeded``, ``JobCancelled``,
``WorkerProcessDied``, ``JobNotAllowed``, ``JobImportError``, ``ResultError``.
"""

from __future__ import annotations


class ChancyError(Exception):
    """Base class of Chancy's own errors."""


# -- configuration and input -----------------------------------------------------------


class UnknownQueueError(ChancyError, LookupError):
    """A queue that has not been declared."""


class InvalidJobError(ChancyError, ValueError):
    """A job that cannot be stored; the message names its index in the batch."""


class JobImportError(ChancyError, ValueError):
    """A job's ``func`` is not an importable name."""


class AppRefError(ChancyError, ValueError):
    """``--app`` does not name a Chancy app; the message is one line for the user."""


# -- the database -----------------------------------------------------------------------


class DatabaseUnavailable(ChancyError, ConnectionError):
    """PostgreSQL could not be reached within the configured time."""


class ConnectionRejected(DatabaseUnavailable):
    """A connection failure that retrying cannot fix (bad credentials, database or role, or
    connection option); raised at once, with the server's (or libpq's) own message."""


class MigrationRequired(ChancyError):
    """The database schema is older than this version of Chancy."""


class MigrationsNeededError(MigrationRequired):
    """Upstream Chancy's name: raised when a worker starts on a schema that is not up to date."""


# -- how a job can end ------------------------------------------------------------------


class JobStopped(BaseException):
    """Raised inside a running job that Chancy asked to stop.

    It derives from :class:`BaseException` so that a plain ``except Exception`` in job code
    does not swallow it. A job that swallows it anyway is killed after a short grace (in a
    process executor) or left to finish (in-process executors cannot kill a thread).
    """


class TimeLimitExceeded(JobStopped):
    """The job ran past its ``Limit.Type.TIME`` limit."""


class JobCancelled(JobStopped):
    """The job was cancelled with ``Chancy.cancel_job`` while it ran (never retried)."""


class MemoryLimitExceeded(ChancyError):
    """The job's process tree used more memory than its ``Limit.Type.MEMORY`` limit; the
    tree was killed, so this is recorded for the job, never raised inside it."""


class WorkerProcessDied(ChancyError):
    """The child process running the job died (a crash, a signal, ``os._exit``)."""


class WrongEventLoop(ChancyError):
    """An asyncio-only coroutine job ran on a worker whose event loop is trio."""


class JobNotAllowed(ChancyError):
    """A job names a function outside the worker's allow-list (never retried)."""


class ResultError(ChancyError, ValueError):
    """A job's return value that cannot be stored: not JSON, or over `max_result_size`.

    The job fails with it like with any error of its own (retried by the usual rules).
    """


class RemoteJobError(ChancyError):
    """A job's error that crossed a process boundary as data (type name and message)."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message


# -- the supervisor ---------------------------------------------------------------------


class ChildStartError(ChancyError, RuntimeError):
    """A child worker process could not be started or failed its handshake."""


class PoolClosed(ChancyError, RuntimeError):
    """The pool is not running (not entered yet, or shutting down)."""


class ProtocolError(ChancyError):
    """The peer sent something that is not a valid frame: truncated, oversized or garbage."""


__all__ = [
    "AppRefError",
    "ChancyError",
    "ChildStartError",
    "ConnectionRejected",
    "DatabaseUnavailable",
    "InvalidJobError",
    "JobCancelled",
    "JobImportError",
    "JobNotAllowed",
    "JobStopped",
    "MemoryLimitExceeded",
    "MigrationRequired",
    "MigrationsNeededError",
    "PoolClosed",
    "ProtocolError",
    "RemoteJobError",
    "ResultError",
    "TimeLimitExceeded",
    "UnknownQueueError",
    "WorkerProcessDied",
    "WrongEventLoop",
]
