"""A byte stream over a connected non-blocking socket, on either anyio backend.

anyio's own ``UNIXSocketStream`` on asyncio waits on a future that the loop's reader
callback resolves; when the read is cancelled in the same loop iteration the socket turns
readable (a killed child closes its end just as its job's time limit cancels the read),
the callback resolves a cancelled future and asyncio reports ``InvalidStateError`` (anyio
#1267 covers the close path; the read path still races in 4.16). :func:`anyio.wait_readable`
tolerates that race, so this stream is built on it: a plain ``recv``/``send`` loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    import socket
    from collections.abc import AsyncIterator


class SocketStream:
    """``receive``/``send``/``aclose`` over *sock*, which this stream owns from now on."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._closed = False

    def fileno(self) -> int:
        return self._sock.fileno()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Bytes as they arrive; :class:`anyio.EndOfStream` once the peer has closed."""
        await anyio.lowlevel.checkpoint()
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                data = self._sock.recv(max_bytes)
            except BlockingIOError:
                await self._wait(anyio.wait_readable)
                continue
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            if not data:
                raise anyio.EndOfStream
            return data

    async def send(self, data: bytes) -> None:
        """Send all of *data*; :class:`anyio.BrokenResourceError` if the peer is gone."""
        await anyio.lowlevel.checkpoint()
        view = memoryview(data)
        while view:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                sent = self._sock.send(view)
            except BlockingIOError:
                await self._wait(anyio.wait_writable)
                continue
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            view = view[sent:]

    async def _wait(self, waiter: object) -> None:
        try:
            await waiter(self._sock)  # type: ignore[operator]
        except anyio.ClosedResourceError:
            raise
        except OSError as exc:  # the descriptor went away under the wait
            if self._closed:
                raise anyio.ClosedResourceError from None
            raise anyio.BrokenResourceError from exc

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            anyio.notify_closing(self._sock)
            self._sock.close()
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> SocketStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            try:
                yield await self.receive()
            except anyio.EndOfStream:
                return
