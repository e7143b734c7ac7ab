"""Queue values: defaults, validation, pack/unpack."""

import pytest

from chancy import Chancy, Queue


def test_defaults_match_the_contract() -> None:
    q = Queue("default")
    assert q.concurrency == 1
    assert q.state is Queue.State.ACTIVE
    assert q.executor == "chancy.executors.process.ProcessExecutor" == Chancy.Executor.Process
    assert q.executor_options == {}
    assert q.polling_interval == 1
    assert q.rate_limit is None
    assert q.rate_limit_window is None
    assert q.tags == {".*"}


def test_pack_unpack_round_trip() -> None:
    q = Queue(
        "reports",
        concurrency=4,
        tags={"has=gpu", r"python=3\.11.*"},
        state=Queue.State.PAUSED,
        executor=Chancy.Executor.Async,
        executor_options={"maximum_jobs_per_worker": 5},
        polling_interval=2,
        rate_limit=10,
        rate_limit_window=60,
    )
    assert Queue.unpack(q.pack()) == q


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "Queue.name"),
        ({"name": "has space"}, "Queue.name"),
        ({"name": "x" * 101}, "Queue.name"),
        ({"name": "ok", "concurrency": 0}, "Queue.concurrency"),
        ({"name": "ok", "concurrency": "2"}, "Queue.concurrency"),
        ({"name": "ok", "tags": "gpu"}, "Queue.tags"),
        ({"name": "ok", "tags": {"("}}, "Queue.tags"),
        ({"name": "ok", "state": "sleeping"}, "Queue.state"),
        ({"name": "ok", "executor": lambda q: q}, "Queue.executor"),
        ({"name": "ok", "executor_options": {"x": object()}}, "Queue.executor_options"),
        ({"name": "ok", "polling_interval": 0}, "Queue.polling_interval"),
        ({"name": "ok", "rate_limit": 0, "rate_limit_window": 1}, "Queue.rate_limit"),
        ({"name": "ok", "rate_limit": 5}, "Queue.rate_limit_window"),
    ],
)
def test_invalid_fields_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        Queue(**kwargs)
