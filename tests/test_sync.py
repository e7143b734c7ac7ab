"""The synchronous surface: `with Chancy(...)` and the `sync_*` methods."""

import jobs
import pytest

from chancy import Chancy, Job, Queue, Reference
from chancy.errors import InvalidJobError, UnknownQueueError


def count(app: Chancy) -> int:
    with app.sync_pool.connection() as conn:
        return conn.execute(app.tables.q("SELECT count(*) FROM {jobs}")).fetchone()[0]


def test_sync_declare_and_push(sync_chancy: Chancy) -> None:
    queue = sync_chancy.sync_declare(Queue("default", concurrency=2))
    assert queue.concurrency == 2
    assert sync_chancy.sync_declare(Queue("default", concurrency=5), upsert=True).concurrency == 5
    ref = sync_chancy.sync_push(Job.from_func(jobs.add, kwargs={"a": 1, "b": 2}))
    assert isinstance(ref, Reference)
    with sync_chancy.sync_pool.connection() as conn:
        row = conn.execute(
            sync_chancy.tables.q("SELECT func, kwargs, state FROM {jobs} WHERE id = %s"),
            (ref.identifier,),
        ).fetchone()
    assert row == ("jobs.add", {"a": 1, "b": 2}, "pending")


def test_sync_push_many_batches(sync_chancy: Chancy) -> None:
    sync_chancy.sync_declare(Queue("default"))
    batches = list(sync_chancy.sync_push_many([Job.from_func(jobs.noop)] * 7, batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert count(sync_chancy) == 7
    with pytest.raises(InvalidJobError, match="job 4"):
        list(
            sync_chancy.sync_push_many(
                [Job.from_func(jobs.noop)] * 4 + [Job.from_func(jobs.add, kwargs={"a": {1, 2}})],
                batch_size=3,
            )
        )
    assert count(sync_chancy) == 10  # the first batch of three committed, the second did not
    with pytest.raises(UnknownQueueError):
        sync_chancy.sync_push(Job.from_func(jobs.noop, queue="missing"))


def test_sync_push_many_ex_in_callers_transaction(sync_chancy: Chancy) -> None:
    sync_chancy.sync_declare(Queue("default"))
    with sync_chancy.sync_pool.connection() as conn:
        with pytest.raises(RuntimeError):
            with conn.transaction(), conn.cursor() as cur:
                sync_chancy.sync_push_many_ex(cur, [Job.from_func(jobs.noop)] * 2)
                raise RuntimeError("rolled back")
        with conn.transaction(), conn.cursor() as cur:
            refs = sync_chancy.sync_push_many_ex(cur, [Job.from_func(jobs.noop)] * 2)
            sync_chancy.sync_notify(cur, "custom", {"n": 2})
    assert len(refs) == 2 and count(sync_chancy) == 2
