"""Length-prefixed frames carrying :data:`~chancy.wire.Message` values.

A frame is a 4-byte big-endian payload length followed by the msgpack-encoded message.
The length is checked against a maximum *before* any buffer is allocated for the payload.
Anything that is not a well-formed frame of a known message raises :class:`ProtocolError`;
a clean end of stream between frames raises :class:`anyio.EndOfStream` (async) or returns
``None`` (blocking).
"""

from __future__ import annotations

import os
import struct
import threading

import msgspec

from chancy.errors import ProtocolError as ProtocolError

from ._messages import Message

#: Default upper bound of one frame's payload (the packed job travels inside).
MAX_FRAME_SIZE = 16 * 1024 * 1024
#: Seconds a frame whose first byte has arrived gets to arrive whole (async frames).
FRAME_TIMEOUT = 10.0

_HEADER = struct.Struct(">I")

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(message: Message, *, max_size: int = MAX_FRAME_SIZE) -> bytes:
    """Encode *message* as one complete frame (header + payload)."""
    payload = _encoder.encode(message)
    if len(payload) > max_size:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds the maximum of {max_size}")
    return _HEADER.pack(len(payload)) + payload


def decode(payload: bytes | bytearray | memoryview) -> Message:
    """Decode one frame's payload (without its header) into a typed message."""
    try:
        return _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(f"undecodable frame: {exc}") from None


def _check_length(header: bytes, max_size: int) -> int:
    length: int = _HEADER.unpack(header)[0]
    if length > max_size:
        raise ProtocolError(f"frame of {length} bytes exceeds the maximum of {max_size}")
    return length


class FrameStream:
    """Async frames over an anyio byte stream (one send lock, one receive buffer).

    Waiting for a frame to *begin* has no deadline; once its first byte is in, the rest must
    follow within ``frame_timeout`` seconds, else :class:`ProtocolError` (a peer that sends
    half a frame and stalls cannot hold the reader forever).
    """

    def __init__(
        self,
        stream: object,
        *,
        max_size: int = MAX_FRAME_SIZE,
        frame_timeout: float = FRAME_TIMEOUT,
    ) -> None:
        import anyio

        self._stream = stream
        self._max_size = max_size
        self._frame_timeout = frame_timeout
        self._buffer = bytearray()
        self._send_lock = anyio.Lock()

    @property
    def stream(self) -> object:
        return self._stream

    @property
    def buffered(self) -> bool:
        """Whether bytes beyond the last received frame are already buffered."""
        return bool(self._buffer)

    async def send(self, message: Message) -> None:
        frame = encode(message, max_size=self._max_size)
        async with self._send_lock:
            await self._stream.send(frame)  # type: ignore[attr-defined]

    async def _fill(self, size: int) -> bool:
        import anyio

        while len(self._buffer) < size:
            try:
                chunk = await self._stream.receive(65536)  # type: ignore[attr-defined]
            except anyio.EndOfStream:
                return False
            self._buffer.extend(chunk)
        return True

    async def receive(self) -> Message:
        """Receive one message; ``anyio.EndOfStream`` if the peer closed between frames."""
        import anyio

        if not self._buffer and not await self._fill(1):
            raise anyio.EndOfStream
        length = self._complete()
        if length is None:  # the frame has begun but is not all here: it gets a deadline
            try:
                with anyio.fail_after(self._frame_timeout):
                    length = await self._rest()
            except TimeoutError:
                have = len(self._buffer)
                what = (
                    f"{have} of {_HEADER.size} header bytes"
                    if have < _HEADER.size
                    else f"{have - _HEADER.size} of {self._length()} payload bytes"
                )
                raise ProtocolError(
                    f"incomplete frame: {what} after {self._frame_timeout:g} s"
                ) from None
        payload = bytes(self._buffer[_HEADER.size : _HEADER.size + length])
        del self._buffer[: _HEADER.size + length]
        return decode(payload)

    def _length(self) -> int:
        return _check_length(bytes(self._buffer[: _HEADER.size]), self._max_size)

    def _complete(self) -> int | None:
        """The payload length if a whole frame is buffered, else None."""
        if len(self._buffer) < _HEADER.size:
            return None
        length = self._length()
        return length if len(self._buffer) >= _HEADER.size + length else None

    async def _rest(self) -> int:
        if not await self._fill(_HEADER.size):
            raise ProtocolError("truncated frame header")
        length = self._length()
        if not await self._fill(_HEADER.size + length):
            raise ProtocolError(f"truncated frame: expected {length} payload bytes")
        return length

    async def aclose(self) -> None:
        await self._stream.aclose()  # type: ignore[attr-defined]


class BlockingFrames:
    """Blocking frames over a raw file descriptor (used by the child; thread-safe writes)."""

    def __init__(self, fd: int, *, max_size: int = MAX_FRAME_SIZE) -> None:
        self.fd = fd
        self._max_size = max_size
        self._write_lock = threading.Lock()

    def _read_exactly(self, size: int) -> bytes | None:
        chunks: list[bytes] = []
        got = 0
        while got < size:
            chunk = os.read(self.fd, min(size - got, 1 << 20))
            if not chunk:
                if got == 0:
                    return None
                raise ProtocolError(f"truncated frame: got {got} of {size} bytes")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def receive(self) -> Message | None:
        """Read one message; ``None`` on a clean end of stream between frames."""
        header = self._read_exactly(_HEADER.size)
        if header is None:
            return None
        length = _check_length(header, self._max_size)
        if length == 0:
            return decode(b"")
        payload = self._read_exactly(length)
        if payload is None:
            raise ProtocolError(f"truncated frame: expected {length} payload bytes")
        return decode(payload)

    def send(self, message: Message) -> None:
        view = memoryview(encode(message, max_size=self._max_size))
        with self._write_lock:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
