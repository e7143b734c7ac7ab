"""The synchronous surface: `with Chancy(...)` and the `sync_*` methods."""

import time

import jobs
import pytest

from chancy import Chancy, Job, Queue, QueuedJob, Reference
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
    sync_chancy.sync_push(Job.from_func(jobs.noop, queue="missing"))  # accepted: waits for it
    assert sync_chancy.sync_get_undeclared_queues() == {"missing": 1}
    with Chancy(sync_chancy.dsn, prefix=sync_chancy.prefix, plugins=[], strict_queues=True) as app:
        with pytest.raises(UnknownQueueError, match="unknown queue 'missing'"):
            app.sync_push(Job.from_func(jobs.noop, queue="missing"))
    assert count(sync_chancy) == 11


def test_sync_push_many_ex_in_callers_transaction(sync_chancy: Chancy) -> None:
    sync_chancy.sync_declare(Queue("default"))
    with sync_chancy.sync_pool.connection() as conn:
        with pytest.raises(RuntimeError), conn.transaction(), conn.cursor() as cur:
            sync_chancy.sync_push_many_ex(cur, [Job.from_func(jobs.noop)] * 2)
            raise RuntimeError("rolled back")
        with conn.transaction(), conn.cursor() as cur:
            refs = sync_chancy.sync_push_many_ex(cur, [Job.from_func(jobs.noop)] * 2)
            sync_chancy.sync_notify(cur, "custom", {"n": 2})
    assert len(refs) == 2
    assert count(sync_chancy) == 2


SYNC_TWINS = [
    "get_job",
    "get_jobs",
    "wait_for_job",
    "cancel_job",
    "get_queue",
    "get_all_queues",
    "get_undeclared_queues",
    "set_queue_state",
    "delete_queue",
    "get_all_workers",
    "migrate",
    "schema_versions",
    "is_up_to_date",
    "declare",
    "push",
    "push_many",
]


def test_every_sync_twin_has_its_async_twin() -> None:
    for name in SYNC_TWINS:
        assert callable(getattr(Chancy, name))
        assert callable(getattr(Chancy, f"sync_{name}"))


@pytest.mark.parametrize("notifications", [True, False])
def test_sync_twins_follow_jobs_and_queues(dsn: str, prefix: str, notifications: bool) -> None:
    import threading

    with Chancy(dsn, prefix=prefix, plugins=[], notifications=notifications) as app:
        assert not app.sync_is_up_to_date()
        app.sync_migrate()
        assert app.sync_is_up_to_date()
        assert app.sync_schema_versions()["core"][0] >= 1
        app.sync_declare(Queue("default", concurrency=3))
        assert app.sync_get_queue("default").concurrency == 3
        assert [q.name for q in app.sync_get_all_queues()] == ["default"]
        paused = app.sync_set_queue_state("default", Queue.State.PAUSED)
        assert app.sync_get_queue("default").state is paused.state is Queue.State.PAUSED
        refs = [app.sync_push(Job.from_func(jobs.noop)) for _ in range(3)]
        gone = Reference("01900000-0000-7000-8000-000000000000")
        got = app.sync_get_jobs([refs[2], gone, refs[0]])
        assert [j.id for j in got] == [refs[2].identifier, refs[0].identifier]
        assert app.sync_get_jobs([]) == []
        assert app.sync_get_job(gone) is None
        assert app.sync_get_job(refs[1]).state is QueuedJob.State.PENDING

        app.sync_cancel_job(refs[1])
        assert app.sync_get_job(refs[1]).state is QueuedJob.State.FAILED
        assert app.sync_wait_for_job(refs[1], timeout=5).state is QueuedJob.State.FAILED
        with pytest.raises(TimeoutError):
            app.sync_wait_for_job(refs[0], interval=0.05, timeout=0.3)

        def finish_later() -> None:
            time.sleep(0.3)
            with app.sync_pool.connection() as conn:
                conn.execute(
                    app.tables.q(
                        "UPDATE {jobs} SET state = 'succeeded', completed_at = now() WHERE id = %s"
                    ),
                    (refs[0].identifier,),
                )

        threading.Thread(target=finish_later).start()
        done = app.sync_wait_for_job(refs[0], interval=0.1, timeout=10)
        assert done is not None
        assert done.state is QueuedJob.State.SUCCEEDED

        assert app.sync_get_all_workers() == []
        app.sync_delete_queue("default")
        assert app.sync_get_all_queues() == []
        assert app.sync_get_job(refs[2]) is None
        with pytest.raises(UnknownQueueError):
            app.sync_get_queue("default")
        with pytest.raises(UnknownQueueError):
            app.sync_delete_queue("default")
        app.sync_migrate(to_version=0)
        assert not app.sync_is_up_to_date()


@pytest.mark.anyio
async def test_sync_twins_share_the_async_results(chancy: Chancy) -> None:
    # The same operation through both doors gives the same answer.
    await chancy.declare(Queue("default"))
    ref = await chancy.push(Job.from_func(jobs.noop))
    with Chancy(chancy.dsn, prefix=chancy.prefix, plugins=[]) as app:
        assert app.sync_get_job(ref) == await chancy.get_job(ref)
        assert app.sync_get_all_queues() == await chancy.get_all_queues()
        assert app.sync_get_jobs([ref]) == await chancy.get_jobs([ref])
