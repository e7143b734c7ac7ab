"""Exceptions raised by Chancy."""

from chancy._db import DatabaseUnavailable
from chancy._result import ResultError
from chancy.job import JobImportError


class ChancyError(Exception):
    """Base class of Chancy's own errors."""


class UnknownQueueError(ChancyError, LookupError):
    """A queue that has not been declared."""


class InvalidJobError(ChancyError, ValueError):
    """A job that cannot be stored; the message names its index in the batch."""


class MigrationRequired(ChancyError):
    """The database schema is older than this version of Chancy."""


class MigrationsNeededError(MigrationRequired):
    """Upstream Chancy's name: raised when a worker starts on a schema that is not up to date."""


__all__ = [
    "ChancyError",
    "DatabaseUnavailable",
    "InvalidJobError",
    "JobImportError",
    "MigrationRequired",
    "MigrationsNeededError",
    "ResultError",
    "UnknownQueueError",
]
