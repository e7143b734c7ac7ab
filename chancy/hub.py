"""The worker's event hub: cluster notifications and local telemetry, for actors and plugins."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio

from chancy.events import HubEvent

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

Handler = Callable[[HubEvent], None]


class Hub:
    """Publishes `HubEvent`s to handlers (called at once, must not block) and subscribers.

    `on(kind, handler)` registers a synchronous handler for one kind (or every kind with
    `"*"`); `subscribe()` gives a memory object stream of events (events are dropped, with a
    warning, for a subscriber that falls more than `max_buffer` behind).
    """

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.log = log or logging.getLogger("chancy.hub")
        self._handlers: dict[str, list[Handler]] = {}
        self._streams: list[MemoryObjectSendStream[HubEvent]] = []

    def on(self, kind: str, handler: Handler) -> Callable[[], None]:
        """Call `handler(event)` for each event of `kind`; returns a function that unregisters."""
        self._handlers.setdefault(kind, []).append(handler)

        def off() -> None:
            with contextlib.suppress(ValueError):
                self._handlers.get(kind, []).remove(handler)

        return off

    @contextlib.contextmanager
    def subscribe(self, max_buffer: int = 1000) -> Iterator[MemoryObjectReceiveStream[HubEvent]]:
        """A stream of every event emitted while the context is open."""
        send, receive = anyio.create_memory_object_stream[HubEvent](max_buffer)
        self._streams.append(send)
        try:
            yield receive
        finally:
            self._streams.remove(send)
            send.close()
            receive.close()

    async def wait_for(
        self, event: str | list[str], timeout: float | None = None
    ) -> list[HubEvent]:
        """Wait for the next event of a kind (or of any of a list of kinds), as upstream Chancy's
        `Hub.wait_for`; returns the events seen, or an empty list once `timeout` seconds pass."""
        kinds = [event] if isinstance(event, str) else list(event)
        if not kinds:
            raise ValueError("At least one event must be provided.")
        seen: list[HubEvent] = []
        done = anyio.Event()

        def handler(item: HubEvent) -> None:
            seen.append(item)
            done.set()

        offs = [self.on(kind, handler) for kind in kinds]
        try:
            with anyio.move_on_after(timeout):
                await done.wait()
        finally:
            for off in offs:
                off()
        return seen

    def has_listeners(self, kind: str) -> bool:
        return bool(self._streams or self._handlers.get(kind) or self._handlers.get("*"))

    def emit(self, kind: str, **body: Any) -> None:
        """Publish an event; never blocks and never raises (a failing handler is logged)."""
        handlers = self._handlers.get(kind)
        everyone = self._handlers.get("*")
        if not (handlers or everyone or self._streams):
            return
        # `HubEvent(kind, body)` without the frozen dataclass's `__init__` (several times
        # slower; this runs for every job when metrics are on).
        event = object.__new__(HubEvent)
        event.__dict__.update(kind=kind, body=body)
        targets = (handlers or ()) if not everyone else [*(handlers or ()), *everyone]
        for handler in tuple(targets):
            try:
                handler(event)
            except Exception:
                self.log.exception("hub handler %r failed on %s", handler, kind)
        for stream in self._streams:
            try:
                stream.send_nowait(event)
            except anyio.WouldBlock:
                self.log.warning("hub subscriber is behind; dropped a %s event", kind)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass
