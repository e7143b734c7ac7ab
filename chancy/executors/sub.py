"""`SubInterpreterExecutor`: runs jobs in sub-interpreters of the worker process.

Needs Python 3.13 or newer (sub-interpreters with their own GIL, the `_interpreters`
module). On an older Python a queue that names this executor fails to start with an error
saying so, and the worker keeps serving its other queues.

Each of the `concurrency` slots owns one sub-interpreter and runs it on a worker thread;
a job is handed over as its packed JSON inside a small script and its outcome comes back as
JSON in a temporary file, so nothing but text crosses between interpreters. What this executor
cannot do, by the nature of sub-interpreters:

* job modules must import in an isolated sub-interpreter: extension modules without
  multi-phase initialisation (for example psycopg's binary build, hence ``import chancy``)
  refuse to load there;
* `Limit.Type.MEMORY` is not enforced (one process), and a job past its `Limit.Type.TIME`
  limit or cancelled is marked failed and its slot's interpreter is abandoned to its thread
  (it runs on until the job returns, then is destroyed; the slot gets a new interpreter).
  For hard limits use the process executor.

``tests/supervisor/test_sub_executor.py`` runs jobs through it on Python 3.13+ (checked
with CPython 3.13.0) and checks the start failure before that.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
import textwrap
import threading
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from chancy.errors import JobCancelled, RemoteJobError, TimeLimitExceeded
from chancy.executors.base import Executor, time_limit
from chancy.job import QueuedJob

#: The first Python whose sub-interpreters this executor can use.
REQUIRED_PYTHON = (3, 13)


def check_supported() -> None:
    """Raise `RuntimeError` naming the Python version needed if this one cannot run it."""
    if sys.version_info < REQUIRED_PYTHON:
        raise RuntimeError(
            "SubInterpreterExecutor needs Python 3.13 or newer (per-interpreter GIL "
            f"sub-interpreters); this worker runs Python {platform.python_version()}. "
            "Use chancy.executors.process.ProcessExecutor (the default) instead."
        )
    try:
        import _interpreters  # type: ignore[import-not-found,unused-ignore]  # 3.13+  # noqa: F401
    except ImportError as exc:  # pragma: no cover - a build without sub-interpreters
        raise RuntimeError(
            f"SubInterpreterExecutor: this Python {platform.python_version()} build has no "
            "_interpreters module"
        ) from exc


# Runs inside the sub-interpreter: stdlib only. Writes {"ok", "type", "message",
# "traceback", "meta", "result"} as JSON to the result file; "result" is the function's
# return value as JSON text (null for None), checked again outside (`Executor.job_finished`).
_SCRIPT = textwrap.dedent(
    """
    import asyncio, importlib, inspect, json, sys, traceback
    _out_path, _data = {out!r}, json.loads({job!r})
    sys.path[:] = {path!r}
    _result = {{"ok": True, "meta": _data.get("meta") or {{}}, "result": None}}
    try:
        _path = _data["func"]
        if ":" in _path:
            _mod, _, _attr = _path.partition(":")
        else:
            _mod, _, _attr = _path.rpartition(".")
        _func = importlib.import_module(_mod)
        for _part in _attr.split("."):
            _func = getattr(_func, _part)
        _out = _func(**(_data.get("kwargs") or {{}}))
        if inspect.iscoroutine(_out):
            _out = asyncio.run(_out)
        if _out is not None:
            try:
                _result["result"] = json.dumps(
                    _out, allow_nan=False, ensure_ascii=False, separators=(",", ":")
                )
            except (TypeError, ValueError):
                _msg = f"result of type {{type(_out).__name__}} is not JSON-serialisable"
                _result = {{
                    "ok": False,
                    "type": "ResultError",
                    "message": _msg,
                    "traceback": "ResultError: " + _msg,
                    "meta": _data.get("meta") or {{}},
                }}
    except BaseException as _exc:
        _result = {{
            "ok": False,
            "type": type(_exc).__qualname__,
            "message": str(_exc),
            "traceback": "".join(traceback.format_exception(_exc)),
            "meta": _data.get("meta") or {{}},
        }}
    with open(_out_path, "w") as _f:
        json.dump(_result, _f, default=repr)
    """
)


class _Run:
    """One job's run on a thread; `abandoned` hands the interpreter's disposal to it."""

    def __init__(self, interp: Any) -> None:
        self.interp = interp
        self.lock = threading.Lock()
        self.done = False
        self.abandoned = False

    def abandon(self) -> bool:
        """Leave the interpreter to the thread; False if the run already ended."""
        with self.lock:
            if self.done:
                return False
            self.abandoned = True
            return True


def _run_in_interpreter(run: _Run, job_json: str) -> dict[str, Any]:
    """Blocking: run one job in the sub-interpreter of *run*; returns the outcome dict.

    If the run was abandoned meanwhile (time limit, cancel), the interpreter is destroyed
    here once the job returns.
    """
    import _interpreters  # type: ignore[import-not-found,unused-ignore]  # 3.13+

    fd, out_path = tempfile.mkstemp(prefix="chancy-sub-", suffix=".json")
    os.close(fd)
    failure: Any = None
    raw = b""
    try:
        script = _SCRIPT.format(out=out_path, job=job_json, path=list(sys.path))
        execute = getattr(_interpreters, "run_string", None) or _interpreters.exec
        failure = execute(run.interp, script)
        with open(out_path, "rb") as f:
            raw = f.read()
    except Exception as exc:  # the interpreter itself failed: report, don't crash the slot
        failure = exc
    finally:
        os.unlink(out_path)
        with run.lock:
            run.done = True
            abandoned = run.abandoned
        if abandoned:
            _interpreters.destroy(run.interp)
    if raw:
        decoded: dict[str, Any] = json.loads(raw)
        return decoded
    return {
        "ok": False,
        "type": "SubInterpreterError",
        "message": f"the sub-interpreter failed: {failure!r}",
        "traceback": repr(failure),
    }


class SubInterpreterExecutor(Executor):
    """Runs jobs in sub-interpreters (Python 3.13+); see the module docs for what it can't."""

    def __init__(self, worker: Any, queue: Any, **options: Any) -> None:
        super().__init__(worker, queue, **options)
        self._send, self._receive = anyio.create_memory_object_stream[QueuedJob](math.inf)
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._cancelled: set[str] = set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            check_supported()
            async with anyio.create_task_group() as tg:
                for _ in range(self.concurrency):
                    tg.start_soon(self._slot)
                task_status.started()
        finally:
            self._send.close()
            self._receive.close()

    async def start_job(self, job: QueuedJob) -> None:
        self._send.send_nowait(job)

    async def cancel(self, job_id: str) -> None:
        if job_id not in self.running:
            return
        self._cancelled.add(job_id)
        scope = self._scopes.get(job_id)
        if scope is not None:
            scope.cancel()

    async def _slot(self) -> None:
        import _interpreters  # type: ignore[import-not-found,unused-ignore]  # 3.13+

        interp = None
        try:
            async for job in self._receive:
                if interp is None:
                    interp = await anyio.to_thread.run_sync(_interpreters.create)
                if not await self._run_one(interp, job):
                    interp = None  # abandoned: its thread destroys it when the job returns
        finally:
            if interp is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(_interpreters.destroy, interp)

    async def _run_one(self, interp: Any, job: QueuedJob) -> bool:
        """Run *job*; False if the interpreter had to be abandoned (time limit, cancel)."""
        limit = time_limit(job)
        scope = anyio.CancelScope()
        self._scopes[job.id] = scope
        run = _Run(interp)
        outcome: dict[str, Any] | None = None
        try:
            if job.id in self._cancelled:
                scope.cancel()
            with scope:
                if limit is not None:
                    scope.deadline = anyio.current_time() + limit
                outcome = await anyio.to_thread.run_sync(
                    _run_in_interpreter, run, json.dumps(job.pack()), abandon_on_cancel=True
                )
        finally:
            self._scopes.pop(job.id, None)
            if outcome is None:
                run.abandon()  # no-op if it ended just as we gave up on it
        kept = not run.abandoned
        if job.id in self._cancelled:
            self._cancelled.discard(job.id)
            await self.job_finished(
                job, error=JobCancelled("job cancelled while running"), retry=False
            )
            return kept
        if outcome is None:
            error = TimeLimitExceeded(f"time limit exceeded after {limit:g} s")
            await self.job_finished(job, error=error)
            return kept
        meta = outcome.get("meta")
        if outcome.get("ok"):
            text = outcome.get("result")
            await self.job_finished(
                job,
                meta=meta,
                result_json=text.encode("utf-8", "surrogatepass") if text is not None else None,
            )
        else:
            await self.job_finished(
                job,
                error=RemoteJobError(outcome.get("type", "Error"), outcome.get("message", "")),
                traceback=outcome.get("traceback"),
                meta=meta,
            )
        return True
