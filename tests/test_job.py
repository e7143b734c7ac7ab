"""Job, QueuedJob, Reference, Limit and @job: pure values, no database."""

import uuid
from datetime import UTC, datetime, timedelta

import jobs
import pytest

from chancy.job import (
    Job,
    JobImportError,
    Limit,
    QueuedJob,
    Reference,
    import_function,
    job,
    uuid7,
)


def test_from_func_names_the_function() -> None:
    j = Job.from_func(jobs.add, kwargs={"a": 1, "b": 2}, priority=3)
    assert j.func == "jobs.add"
    assert j.kwargs == {"a": 1, "b": 2}
    assert j.priority == 3
    assert j.scheduled_at.tzinfo is not None


def _local() -> None:
    pass


def test_from_func_refuses_what_cannot_be_imported() -> None:
    with pytest.raises(JobImportError, match="lambda"):
        Job.from_func(lambda: None)

    def inner() -> None:
        pass

    with pytest.raises(JobImportError, match="closure or nested"):
        Job.from_func(inner)
    main_func = type(_local)(_local.__code__, {"__name__": "__main__"}, "mainfunc")
    main_func.__module__ = "__main__"
    with pytest.raises(JobImportError, match="__main__"):
        Job.from_func(main_func)
    renamed = type(_local)(_local.__code__, globals(), "not_there")
    renamed.__qualname__ = "not_there"
    with pytest.raises(JobImportError, match="no attribute"):
        Job.from_func(renamed)


def test_job_decorator_keeps_function_callable() -> None:
    assert jobs.decorated(4) == 8
    assert jobs.decorated.job.func == "jobs.decorated"
    assert jobs.decorated.job.priority == 5
    # The decorated function can be turned into a job again and imports back.
    assert Job.from_func(jobs.decorated).func == "jobs.decorated"


def test_job_decorator_refuses_lambdas() -> None:
    with pytest.raises(JobImportError):
        job()(lambda: None)


def test_with_builders_return_new_objects() -> None:
    base = Job.from_func(jobs.noop)
    when = datetime(2030, 1, 1, tzinfo=UTC)
    limits = [Limit(Limit.Type.MEMORY, 1024), Limit(Limit.Type.TIME, 5)]
    changed = (
        base.with_kwargs(x=1)
        .with_limits(limits)
        .with_max_attempts(3)
        .with_meta({"m": 1})
        .with_priority(9)
        .with_queue("other")
        .with_scheduled_at(when)
        .with_unique_key("k")
    )
    assert base == Job.from_func(jobs.noop, scheduled_at=base.scheduled_at)
    assert changed is not base
    assert (changed.kwargs, changed.max_attempts, changed.meta) == ({"x": 1}, 3, {"m": 1})
    assert (changed.priority, changed.queue, changed.unique_key) == (9, "other", "k")
    assert changed.scheduled_at == when
    assert changed.limits == limits
    with pytest.raises(AttributeError):
        changed.priority = 1  # type: ignore[misc]


def test_naive_scheduled_at_is_utc() -> None:
    j = Job.from_func(jobs.noop).with_scheduled_at(datetime(2030, 1, 1))
    assert j.scheduled_at == datetime(2030, 1, 1, tzinfo=UTC)


def test_pack_unpack_round_trip() -> None:
    j = Job.from_func(
        jobs.add,
        kwargs={"a": 1, "b": [1, 2]},
        priority=-2,
        max_attempts=4,
        limits=[Limit(Limit.Type.TIME, 2)],
        unique_key="u",
        meta={"x": {"y": 1}},
    )
    assert Job.unpack(j.pack()) == j
    now = datetime.now(UTC)
    q = QueuedJob(
        **{k: getattr(j, k) for k in j.__dataclass_fields__},
        id=str(uuid7()),
        started_at=now,
        completed_at=now + timedelta(seconds=1),
        attempts=2,
        state=QueuedJob.State.FAILED,
        errors=[{"attempt": 1, "traceback": "boom"}],
    )
    assert QueuedJob.unpack(q.pack()) == q
    import json

    assert QueuedJob.unpack(json.loads(json.dumps(q.pack()))) == q


def test_limit_serialize_and_validation() -> None:
    limit = Limit(Limit.Type.MEMORY, 100 * 1024 * 1024)
    assert Limit.deserialize(limit.serialize()) == limit
    assert limit.serialize() == {"type": "memory", "value": 100 * 1024 * 1024}
    with pytest.raises(ValueError, match="Limit.value"):
        Limit(Limit.Type.TIME, 0)
    with pytest.raises(ValueError, match="Limit.type_"):
        Limit("bogus", 1)  # type: ignore[arg-type]


def test_reference_equality_and_hash() -> None:
    u = uuid7()
    ref = Reference(str(u))
    assert ref == Reference(u)
    assert ref == str(u)
    assert ref == u
    assert ref != Reference(uuid7())
    assert ref != "not-a-uuid"
    assert len({ref, Reference(str(u).upper())}) == 1
    with pytest.raises(ValueError):
        Reference("nope")


def test_uuid7_is_time_ordered() -> None:
    ids = [uuid7() for _ in range(2000)]
    assert ids == sorted(ids)
    assert all(i.version == 7 for i in ids)
    assert len(set(ids)) == len(ids)
    assert isinstance(ids[0], uuid.UUID)


def test_import_function() -> None:
    assert import_function("jobs.add") is jobs.add
    assert import_function("jobs:add") is jobs.add
    assert import_function("os.path.join") is __import__("os").path.join
    for bad, message in [
        ("", "invalid"),
        ("nodots", "dotted path"),
        ("no_such_module_xyz.f", "cannot import"),
        ("jobs.missing", "no attribute"),
    ]:
        with pytest.raises(JobImportError, match=message):
            import_function(bad)


def test_batch_ids_are_time_ordered_v7_and_unique_across_calls() -> None:
    import uuid

    from chancy.job import uuid7, uuid7_strings

    ids = [*uuid7_strings(9000), str(uuid7()), *uuid7_strings(3), *uuid7_strings(0)]
    assert ids == sorted(ids)  # more than 4096 in one batch rolls into the next millisecond
    assert len(set(ids)) == len(ids)
    for text in (ids[0], ids[4096], ids[-1]):
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
