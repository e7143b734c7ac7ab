"""Prometheus metrics of one worker (the optional `metrics` extra: prometheus-client).

Counters and histograms are fed from the worker's hub events (`job.started`, `job.finished`),
so the job path itself is unchanged; gauges are read from the worker when scraped. Every
worker has a `CollectorRegistry` of its own (the process-wide default registry is not used).
The names and labels are listed in docs/metrics.md and are a contract.
"""

from __future__ import annotations

import contextlib
from collections import Counter as _Tally
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chancy.actors.messages import JOB_FINISHED, JOB_STARTED, HubEvent
from chancy.job import QueuedJob

if TYPE_CHECKING:
    from chancy.worker import Worker

INSTALL_HINT = 'pip install "chancy-queue[metrics]"  (or: pip install "prometheus-client>=0.20")'

#: Histogram buckets (seconds) for job run times and waits.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

_LIMITS = {"MemoryLimitExceeded": "memory", "TimeLimitExceeded": "time"}


def available() -> bool:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


def error_type(job: QueuedJob) -> str | None:
    """The type name of the job's last error (the last line of its stored traceback)."""
    if not job.errors:
        return None
    text = str(job.errors[-1].get("traceback") or "").rstrip()
    if not text:
        return None
    last = text.splitlines()[-1]
    name, sep, _ = last.partition(":")
    name = name.strip()
    if not sep or not name or " " in name:
        return None
    return name.rpartition(".")[2]


def outcome(job: QueuedJob) -> str:
    """succeeded, failed, retrying or cancelled (FAILED with a JobCancelled error)."""
    state = job.state
    if state == QueuedJob.State.SUCCEEDED:
        return "succeeded"
    if state == QueuedJob.State.RETRYING:
        return "retrying"
    if error_type(job) == "JobCancelled":
        return "cancelled"
    return "failed"


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return max(0.0, (later - earlier).total_seconds())


class WorkerMetrics:
    """The metrics of one worker; `install()` subscribes to its hub, `render()` gives the
    Prometheus text exposition."""

    def __init__(self, worker: Worker) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.worker = worker
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs_started = Counter(
            "chancy_jobs_started",
            "Jobs this worker started.",
            ["queue"],
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "chancy_jobs_finished",
            "Job attempts this worker finished, by outcome "
            "(succeeded, failed, retrying, cancelled).",
            ["queue", "state"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "chancy_job_duration_seconds",
            "Run time of finished job attempts (started_at to completed_at).",
            ["queue"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.job_wait = Histogram(
            "chancy_job_wait_seconds",
            "Time jobs waited to start (scheduled_at to started_at).",
            ["queue"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.limit_kills = Counter(
            "chancy_limit_kills",
            "Job attempts stopped for exceeding a limit (memory or time).",
            ["queue", "limit"],
            registry=self.registry,
        )
        self.registry.register(_WorkerCollector(worker))
        self._offs: list[Callable[[], None]] = []

    def install(self) -> None:
        if not self._offs:
            self._offs = [
                self.worker.hub.on(JOB_STARTED, self._on_started),
                self.worker.hub.on(JOB_FINISHED, self._on_finished),
            ]

    def uninstall(self) -> None:
        offs, self._offs = self._offs, []
        for off in offs:
            off()

    @contextlib.contextmanager
    def installed(self) -> Iterator[WorkerMetrics]:
        self.install()
        try:
            yield self
        finally:
            self.uninstall()

    def _on_started(self, event: HubEvent) -> None:
        job: QueuedJob = event.body["job"]
        self.jobs_started.labels(job.queue).inc()
        wait = _seconds(job.started_at, job.scheduled_at)
        if wait is not None:
            self.job_wait.labels(job.queue).observe(wait)

    def _on_finished(self, event: HubEvent) -> None:
        job: QueuedJob = event.body["job"]
        state = outcome(job)
        self.jobs_finished.labels(job.queue, state).inc()
        end = job.completed_at if state != "retrying" else datetime.now(UTC)
        duration = _seconds(end, job.started_at)
        if duration is not None:
            self.job_duration.labels(job.queue).observe(duration)
        if state != "succeeded":
            limit = _LIMITS.get(error_type(job) or "")
            if limit is not None:
                self.limit_kills.labels(job.queue, limit).inc()

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def children_rss(worker: Worker) -> int:
    """Resident memory (bytes) of the process executors' children, summed."""
    import psutil

    total = 0
    for executor in worker.executors.values():
        pool = getattr(executor, "pool", None)
        for pid in getattr(pool, "pids", None) or ():
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                pass
    return total


class _WorkerCollector:
    """Gauges read from the worker at scrape time."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        worker = self.worker
        running = GaugeMetricFamily(
            "chancy_worker_running_jobs", "Jobs this worker runs now.", labels=["queue"]
        )
        counts = _Tally(job.queue for job in worker.running_jobs())
        for queue in worker.executors:
            counts.setdefault(queue, 0)
        for queue, count in sorted(counts.items()):
            running.add_metric([queue], count)
        yield running
        yield GaugeMetricFamily(
            "chancy_batcher_backlog",
            "Job updates waiting to be written to the database.",
            value=len(worker.outgoing),
        )
        yield GaugeMetricFamily(
            "chancy_is_leader",
            "1 while this worker is the leader.",
            value=int(worker.is_leader.is_set()),
        )
        listener = worker.listener
        yield GaugeMetricFamily(
            "chancy_listener_connected",
            "1 while the notification listener is connected (0 when notifications are off).",
            value=int(bool(listener is not None and listener.connected)),
        )
        yield GaugeMetricFamily(
            "chancy_worker_children_rss_bytes",
            "Resident memory of the process executors' child processes, summed.",
            value=children_rss(worker),
        )
