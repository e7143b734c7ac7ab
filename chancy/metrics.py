"""Prometheus metrics of one worker (the optional `metrics` extra: prometheus-client).

Counters and histograms are fed from the worker's per-batch hub events (`jobs.claimed` from the
fetchers, `batch.written` from the outgoing batcher: an attempt is counted as finished once its
new state is written), so the job path itself is unchanged; gauges are read from the worker when scraped. Every
worker has a `CollectorRegistry` of its own (the process-wide default registry is not used).
The names and labels are listed in docs/metrics.md and are a contract.
"""

from __future__ import annotations

import contextlib
import math
import time
from bisect import bisect_left, bisect_right
from collections import Counter as _Tally
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chancy.events import BATCH_WRITTEN, DB_ERROR, JOBS_CLAIMED, HubEvent
from chancy.job import QueuedJob

#: Seconds a scrape reuses the leader's last `queue_stats()`.
QUEUE_STATS_TTL = 5.0

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from chancy.admin import QueueStats
    from chancy.worker import Worker

INSTALL_HINT = 'pip install "chancy-queue[metrics]"  (or: pip install "prometheus-client>=0.20")'

#: Histogram buckets (seconds) for job run times and waits.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

_LIMITS = {"MemoryLimitExceeded": "memory", "TimeLimitExceeded": "time"}
_ZERO = timedelta(0)
_SPAN_BUCKETS = tuple(timedelta(seconds=b) for b in BUCKETS)
_SUCCEEDED, _FAILED, _RETRYING = (
    QueuedJob.State.SUCCEEDED,
    QueuedJob.State.FAILED,
    QueuedJob.State.RETRYING,
)


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


class _Histogram:
    """One histogram series: counts per bucket (not cumulative) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one: above every bucket
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1  # le semantics: value <= bound
        self.total += max(value, 0.0)

    def add(self, spans: list[timedelta]) -> None:
        """Observe many spans at once: one C sort, then a bisection per bucket bound rather
        than one per span. A negative span (clock skew) counts as zero."""
        if not spans:
            return
        spans = sorted(spans)
        if spans[0] < _ZERO:
            spans = [span if span > _ZERO else _ZERO for span in spans]
        counts, size, low = self.counts, len(spans), 0
        for index, bound in enumerate(_SPAN_BUCKETS):
            high = bisect_right(spans, bound, low)  # spans <= bound: le semantics
            counts[index] += high - low
            low = high
            if low == size:
                break
        counts[-1] += size - low
        self.total += sum(spans, _ZERO).total_seconds()


class WorkerMetrics:
    """The metrics of one worker; `install()` subscribes to its hub, `render()` gives the
    Prometheus text exposition.

    The hub handlers only bump plain dicts (a few microseconds per job; prometheus-client's
    own metric objects take a lock per update and cost several times that); the registry's
    collector turns them into metric families when scraped. Everything runs on the worker's
    event loop thread.
    """

    def __init__(self, worker: Worker) -> None:
        from prometheus_client import CollectorRegistry

        self.worker = worker
        self.started: dict[str, int] = {}
        self.finished: dict[tuple[str, str], int] = {}
        self.limit_kills: dict[tuple[str, str], int] = {}
        self.db_errors: dict[str, int] = {}
        self.duration: dict[str, _Histogram] = {}
        self.wait: dict[str, _Histogram] = {}
        #: The leader's last `queue_stats()` (None on other workers), at most
        #: `QUEUE_STATS_TTL` seconds old when scraped.
        self.queue_stats: list[QueueStats] | None = None
        self._queue_stats_at = -math.inf
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self._offs: list[Callable[[], None]] = []

    def install(self) -> None:
        if not self._offs:
            self._offs = [
                self.worker.hub.on(JOBS_CLAIMED, self._on_claimed),
                self.worker.hub.on(BATCH_WRITTEN, self._on_written),
                self.worker.hub.on(DB_ERROR, self._on_db_error),
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

    # The two batch handlers run once per claim and once per written batch (not once per job:
    # a hub dispatch costs more than the counting), with `observe` and `outcome` inlined.

    def _on_db_error(self, event: HubEvent) -> None:
        operation = str(event.body.get("operation", "other"))
        self.db_errors[operation] = self.db_errors.get(operation, 0) + 1

    def _on_claimed(self, event: HubEvent) -> None:
        jobs: list[QueuedJob] = event.body["jobs"]
        if not jobs:
            return
        queue = jobs[0].queue  # a claim is one queue's
        self.started[queue] = self.started.get(queue, 0) + len(jobs)
        try:
            waits = [job.started_at - job.scheduled_at for job in jobs]  # type: ignore[operator]
        except TypeError:  # a malformed row without its times
            waits = [j.started_at - j.scheduled_at for j in jobs if j.started_at and j.scheduled_at]
        self._series(self.wait, queue).add(waits)

    def _on_written(self, event: HubEvent) -> None:
        jobs: list[QueuedJob] = event.body.get("jobs") or []
        succeeded = [job for job in jobs if job.state is _SUCCEEDED]
        finished = self.finished
        if succeeded:
            queue = succeeded[0].queue
            if all(job.queue == queue for job in succeeded):
                by_queue = {queue: succeeded}
            else:
                by_queue = {}
                for job in succeeded:
                    by_queue.setdefault(job.queue, []).append(job)
            for queue, done in by_queue.items():
                key = (queue, "succeeded")
                finished[key] = finished.get(key, 0) + len(done)
                try:
                    runs = [job.completed_at - job.started_at for job in done]  # type: ignore[operator]
                except TypeError:
                    runs = [
                        j.completed_at - j.started_at
                        for j in done
                        if j.completed_at and j.started_at
                    ]
                self._series(self.duration, queue).add(runs)
        if len(succeeded) < len(jobs):
            self._count_unsuccessful([job for job in jobs if job.state is not _SUCCEEDED])

    def _count_unsuccessful(self, jobs: list[QueuedJob]) -> None:
        now = datetime.now(UTC)
        for job in jobs:
            state = job.state
            if state is _FAILED:
                label = "failed"
            elif state is _RETRYING:
                label = "retrying"
            else:  # put back (PENDING) at shutdown: not a finished attempt
                continue
            queue = job.queue
            kind = error_type(job)
            if kind == "JobCancelled" and label == "failed":
                label = "cancelled"
            limit = _LIMITS.get(kind or "")
            if limit is not None:
                key = (queue, limit)
                self.limit_kills[key] = self.limit_kills.get(key, 0) + 1
            key = (queue, label)
            self.finished[key] = self.finished.get(key, 0) + 1
            at, end = job.started_at, job.completed_at or now
            if at is not None:
                self._series(self.duration, queue).observe((end - at).total_seconds())

    @staticmethod
    def _series(series: dict[str, _Histogram], queue: str) -> _Histogram:
        hist = series.get(queue)
        if hist is None:
            hist = series[queue] = _Histogram()
        return hist

    async def refresh_queues(self) -> None:
        """Read the queue gauges (one `queue_stats` query) if this worker leads and the last
        read is older than `QUEUE_STATS_TTL`; other workers export none, so that summing the
        workers' series never counts a queue twice."""
        worker = self.worker
        if not worker.is_leader.is_set():
            self.queue_stats = None
            return
        now = time.monotonic()
        if now - self._queue_stats_at < QUEUE_STATS_TTL:
            return
        try:
            self.queue_stats = await worker.chancy.queue_stats()
            self._queue_stats_at = now
        except Exception as exc:  # a scrape must not fail with the database; keep the last
            worker.log.debug("metrics: queue_stats failed: %s", exc)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def child_restarts(worker: Worker) -> dict[tuple[str, str], int]:
    """{(queue, reason): children replaced} over the worker's process executors."""
    counts: dict[tuple[str, str], int] = {}
    for name, executor in worker.executors.items():
        pool = getattr(executor, "pool", None)
        for reason, count in (getattr(pool, "restarts", None) or {}).items():
            counts[(name, reason)] = counts.get((name, reason), 0) + count
    return counts


def children_rss(worker: Worker) -> int:
    """Resident memory (bytes) of the process executors' children, summed."""
    import psutil

    total = 0
    for executor in worker.executors.values():
        pool = getattr(executor, "pool", None)
        for pid in getattr(pool, "pids", None) or ():
            with contextlib.suppress(psutil.Error):
                total += psutil.Process(pid).memory_info().rss
    return total


def _histogram(name: str, doc: str, series: dict[str, _Histogram]) -> Any:
    from prometheus_client.core import HistogramMetricFamily
    from prometheus_client.utils import floatToGoString

    family = HistogramMetricFamily(name, doc, labels=["queue"])
    for queue, hist in sorted(series.items()):
        buckets, running = [], 0
        for bound, count in zip([*BUCKETS, math.inf], hist.counts, strict=True):
            running += count
            buckets.append((floatToGoString(bound), running))  # type: ignore[no-untyped-call]
        family.add_metric([queue], buckets, hist.total)
    return family


class _Collector:
    """The worker's metrics, as metric families: the counters and histograms fed by the hub
    handlers, and gauges read from the worker now."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        metrics, worker = self.metrics, self.metrics.worker
        started = CounterMetricFamily(
            "chancy_jobs_started", "Job attempts this worker started.", labels=["queue"]
        )
        for queue, count in sorted(metrics.started.items()):
            started.add_metric([queue], count)
        yield started
        finished = CounterMetricFamily(
            "chancy_jobs_finished",
            "Job attempts this worker finished, by outcome "
            "(succeeded, failed, retrying, cancelled).",
            labels=["queue", "state"],
        )
        for (queue, state), count in sorted(metrics.finished.items()):
            finished.add_metric([queue, state], count)
        yield finished
        yield _histogram(
            "chancy_job_duration_seconds",
            "Run time of finished job attempts (started_at to completed_at).",
            metrics.duration,
        )
        yield _histogram(
            "chancy_job_wait_seconds",
            "Time jobs waited to start (scheduled_at to started_at).",
            metrics.wait,
        )
        kills = CounterMetricFamily(
            "chancy_limit_kills",
            "Job attempts stopped for exceeding a limit (memory or time).",
            labels=["queue", "limit"],
        )
        for (queue, limit), count in sorted(metrics.limit_kills.items()):
            kills.add_metric([queue, limit], count)
        yield kills
        if metrics.queue_stats is not None:
            depth = GaugeMetricFamily(
                "chancy_queue_jobs",
                "Unfinished jobs per queue and state (exported by the leader only).",
                labels=["queue", "state"],
            )
            oldest = GaugeMetricFamily(
                "chancy_queue_oldest_runnable_seconds",
                "How long the longest-waiting due job of each queue has waited (leader only).",
                labels=["queue"],
            )
            for stats in metrics.queue_stats:
                for state in ("pending", "retrying", "running"):
                    depth.add_metric([stats.name, state], getattr(stats, state))
                oldest.add_metric([stats.name], stats.oldest_runnable_age or 0.0)
            yield depth
            yield oldest
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
        db_errors = CounterMetricFamily(
            "chancy_db_errors",
            "Database operations of this worker that failed (and were retried), by operation.",
            labels=["operation"],
        )
        for operation, count in sorted(metrics.db_errors.items()):
            db_errors.add_metric([operation], count)
        yield db_errors
        restarts = CounterMetricFamily(
            "chancy_child_restarts",
            "Child processes replaced, by reason (recycled, limit, cancelled, died, stuck).",
            labels=["queue", "reason"],
        )
        for (queue, reason), count in sorted(child_restarts(worker).items()):
            restarts.add_metric([queue, reason], count)
        yield restarts
