"""The messages exchanged between the supervisor and its child worker processes.

Every message is a frozen :class:`msgspec.Struct` with a ``type`` tag; together they form
the :data:`Message` union, the only thing that ever crosses the channel. Errors cross as
data (:class:`ErrorInfo`), never as pickles. Job payloads travel as opaque JSON bytes (the
packed ``QueuedJob`` as read from the database), so the supervisor never decodes kwargs.
"""

from __future__ import annotations

import msgspec

#: Bumped whenever a message changes incompatibly; checked in the handshake.
PROTOCOL_VERSION = 2


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    pass


class ErrorInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An exception as data: its type name, message and formatted traceback."""

    type: str
    message: str
    traceback: str


class Hello(_Base, frozen=True, tag="hello"):
    """Supervisor -> child, first message: protocol version and the child's setup."""

    version: int
    sys_path: list[str]
    supervisor_pid: int
    initializer: str | None = None


class Ready(_Base, frozen=True, tag="ready"):
    """Child -> supervisor, answer to :class:`Hello` once the initializer has run."""

    version: int
    pid: int


class Fatal(_Base, frozen=True, tag="fatal"):
    """Child -> supervisor: the child cannot serve (bad version, initializer failed)."""

    error: ErrorInfo


class RunJob(_Base, frozen=True, tag="run_job"):
    """Supervisor -> child: run one job.

    ``job`` is the packed ``QueuedJob`` as JSON bytes. ``time_limit`` (seconds) lets the
    child arm its kernel CPU-time backstop before the job's code is imported.
    ``max_result_size`` (bytes of JSON) is the largest return value the child may send back;
    a larger one fails the job in the child (None: no cap).
    """

    job_id: str
    job: bytes
    time_limit: float | None = None
    max_result_size: int | None = None


class Started(_Base, frozen=True, tag="started"):
    """Child -> supervisor: the child's main loop took the job and is about to run it.

    Sent before any of the job's code runs, so a job whose child died (or was stuck) before
    this arrived never started: the supervisor sends it to a fresh child without charging
    it an attempt.
    """

    job_id: str


class JobDone(_Base, frozen=True, tag="job_done"):
    """Child -> supervisor: the job ended; ``meta`` is the job's meta after the run (JSON).

    ``result`` is what the job's function returned, encoded as JSON by the child (None when
    it returned None or did not succeed); the supervisor passes it on without decoding more
    than JSON.
    """

    job_id: str
    ok: bool
    meta: bytes
    error: ErrorInfo | None = None
    result: bytes | None = None


class StopJob(_Base, frozen=True, tag="stop_job"):
    """Supervisor -> child: raise a stop exception inside the running job."""

    job_id: str
    reason: str
    kind: str = "cancelled"  # "cancelled" or "time_limit"


class Shutdown(_Base, frozen=True, tag="shutdown"):
    """Supervisor -> child: finish up and exit (sent only while the child is idle)."""


Message = Hello | Ready | Fatal | RunJob | Started | JobDone | StopJob | Shutdown
