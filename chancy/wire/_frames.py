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

from chancy.errors import ProtocolError

from ._messages import Message

#: Default upper bound of one frame's payload (the packed job travels inside).
MAX_FRAME_SIZE = 16 * 1024 * 1024

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
    (length,) = _HEADER.unpack(header)
    if length > max_size:
        raise ProtocolError(f"frame of {length} bytes exceeds the maximum of {max_size}")
    return length


class FrameStream:
    """Async frames over an anyio byte stream (one send lock, one receive buffer)."""

    def __init__(self, stream: object, *, max_size: int = MAX_FRAME_SIZE) -> None:
        import anyio

        self._stream = stream
        self._max_size = max_size
        self._buffer = bytearray()
        self._send_lock = anyio.Lock()

    @property
    def stream(self) -> object:
        return self._stream

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

        if not await self._fill(_HEADER.size):
            if self._buffer:
                raise ProtocolError("truncated frame header")
            raise anyio.EndOfStream
        length = _check_length(bytes(self._buffer[: _HEADER.size]), self._max_size)
        if not await self._fill(_HEADER.size + length):
            raise ProtocolError(f"truncated frame: expected {length} payload bytes")
        payload = bytes(self._buffer[_HEADER.size : _HEADER.size + length])
        del self._buffer[: _HEADER.size + length]
        return decode(payload)

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
