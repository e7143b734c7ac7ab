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
