"""Workload 6, the floor: the drain done by a bare psycopg loop running only the SQL a queue
cannot avoid (claim a batch with SKIP LOCKED, mark it done in one statement). Every drain figure
can be read as a fraction of this one."""

from __future__ import annotations

import uuid

import psycopg

from benchmarks._harness import JOBS, Context, Figure, Timer, fresh_app
from chancy import Job, Queue


def _claim(jobs: str) -> str:
    return f"""
        WITH picked AS (
            SELECT id FROM {jobs}
            WHERE queue = 'bench' AND state IN ('pending', 'retrying') AND scheduled_at <= now()
            ORDER BY priority DESC, id
            LIMIT %s
            FOR UPDATE SKIP LOCKED
        )
        UPDATE {jobs} AS j SET state = 'running', started_at = now(), attempts = j.attempts + 1
        FROM picked WHERE j.id = picked.id
        RETURNING j.id, j.func, j.kwargs
    """


def _done(jobs: str) -> str:
    return (
        f"UPDATE {jobs} SET state = 'succeeded', completed_at = now()"
        " WHERE id = ANY(%s) AND state = 'running'"
    )


def drain(dsn: str, prefix: str, batch: int) -> tuple[int, float]:
    """Drain every runnable job of queue 'bench'; (jobs done, seconds)."""
    jobs = f'"{prefix}jobs"'
    claim, done = _claim(jobs), _done(jobs)
    count = 0
    with psycopg.connect(dsn, autocommit=True) as conn, Timer() as t:
        while True:
            rows = conn.execute(claim, (batch,)).fetchall()
            if not rows:
                break
            conn.execute(done, ([r[0] for r in rows],))
            count += len(rows)
    return count, t.seconds


def bare_inserts(dsn: str, prefix: str, n: int, batch: int) -> float:
    """jobs/s of plain INSERTs of `n` jobs, `batch` rows per statement (ids made here)."""
    jobs = f'"{prefix}jobs"'
    one = f"INSERT INTO {jobs} (id, queue, func) VALUES (%s, 'bench', %s)"
    many = (
        f"INSERT INTO {jobs} (id, queue, func)"
        " SELECT unnest(%s::uuid[]), 'bench', unnest(%s::text[])"
    )
    func = f"{JOBS}.noop"
    with psycopg.connect(dsn, autocommit=True) as conn, Timer() as t:
        for start in range(0, n, batch):
            size = min(batch, n - start)
            if size == 1:
                conn.execute(one, (uuid.uuid4(), func))
            else:
                conn.execute(many, ([uuid.uuid4() for _ in range(size)], [func] * size))
    return n / t.seconds


def run(ctx: Context) -> list[Figure]:
    n = 20_000
    figures = []
    for count, batch, name in ((20_000, 1000, "batches of 1,000"), (2_000, 1, "one at a time")):
        samples = []
        for _ in range(ctx.runs):
            with fresh_app(ctx.dsn, Queue("bench")) as app:
                samples.append(bare_inserts(ctx.dsn, app.prefix, count, batch))
        ctx.log(f"  bare INSERT {name}: {[round(s) for s in samples]}")
        figures.append(
            Figure(
                "floor",
                f"bare psycopg INSERT, {name}",
                "jobs/s",
                samples,
                params={"jobs": count, "batch": batch},
            )
        )
    for batch in (100, 10):
        samples = []
        for _ in range(ctx.runs):
            with fresh_app(ctx.dsn, Queue("bench")) as app:
                with app:
                    for _ in app.sync_push_many(
                        [Job(func=f"{JOBS}.noop", queue="bench") for _ in range(n)]
                    ):
                        pass
                count, seconds = drain(ctx.dsn, app.prefix, batch)
                assert count == n, (count, n)
                samples.append(n / seconds)
        ctx.log(f"  floor batch={batch}: {samples}")
        figures.append(
            Figure(
                "floor",
                f"bare psycopg drain, batch {batch}",
                "jobs/s",
                samples,
                params={"jobs": n, "batch": batch, "connections": 1},
            )
        )
    return figures
