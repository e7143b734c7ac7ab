"""Hub.wait_for, upstream Chancy's way to wait for an event."""

import anyio
import pytest

from chancy.hub import Hub

pytestmark = pytest.mark.anyio


async def test_wait_for_returns_the_event_and_empty_on_timeout() -> None:
    hub = Hub()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_emit_later, hub)
        events = await hub.wait_for(["other", "worker.queue.started"], timeout=30)
    assert [e.kind for e in events] == ["worker.queue.started"]
    assert events[0].body == {"queue": "q"}
    assert await hub.wait_for("never", timeout=0.05) == []
    assert not hub.has_listeners("never")


async def _emit_later(hub: Hub) -> None:
    await anyio.sleep(0.01)
    hub.emit("worker.queue.started", queue="q")


async def test_worker_emits_upstream_queue_events(chancy, start_worker) -> None:
    from chancy import Queue

    worker = await start_worker()
    with worker.hub.subscribe() as events:
        await chancy.declare(Queue("hubq", executor=chancy.Executor.Async))
        with anyio.fail_after(30):
            async for event in events:
                if event.kind == "worker.queue.started" and event.body["queue"].name == "hubq":
                    break
        await chancy.delete_queue("hubq")
        with anyio.fail_after(30):
            async for event in events:
                if event.kind == "worker.queue.removed" and event.body["queue"].name == "hubq":
                    break


async def test_worker_lifecycle_and_queue_events_by_upstream_names(chancy) -> None:
    """worker.started/stopped, worker.queue.updated on new settings, worker.queue.full once
    each time the executor fills up — in the order a plugin watching the hub would see them."""
    from support import FAST, eventually

    from chancy import Job, Queue
    from chancy.worker import Worker

    worker = Worker(chancy, **FAST)
    box: list = []
    seen: list[tuple[str, object]] = []
    worker.hub.on("*", lambda e: seen.append((e.kind, e.body.get("queue"))))
    await chancy.declare(Queue("hq", executor=chancy.Executor.Async, concurrency=1))
    with anyio.fail_after(30):
        async with worker:
            await eventually(lambda: any(kind == "worker.queue.started" for kind, _ in seen))
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: _full(worker, box))
                await anyio.sleep(0.05)
                for _ in range(2):
                    await chancy.push(
                        Job(
                            func="wjobs.async_sleep",
                            queue="hq",
                            kwargs={"label": "f", "seconds": 0.3},
                        )
                    )
            assert box
            assert box[0].body["queue"].name == "hq"
            await chancy.declare(
                Queue("hq", executor=chancy.Executor.Async, concurrency=2), upsert=True
            )
            (updated,) = await worker.hub.wait_for("worker.queue.updated", timeout=20)
            assert updated.body["queue"].concurrency == 2
            assert updated.body["previous"].concurrency == 1
    kinds = [kind for kind, _ in seen]
    assert kinds.count("worker.started") == 1
    assert kinds[-1] == "worker.stopped"
    assert kinds.index("worker.started") < kinds.index("worker.queue.full")
    assert kinds.index("worker.queue.updated") < len(kinds) - 1


async def _full(worker, box: list) -> None:
    box.extend(await worker.hub.wait_for("worker.queue.full", timeout=20))
