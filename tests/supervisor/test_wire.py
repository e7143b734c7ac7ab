"""The wire: messages round-trip; bad frames raise ProtocolError (async and blocking)."""

from __future__ import annotations

import contextlib
import os
import socket
import struct

import anyio
import anyio.abc
import anyio.lowlevel
import msgspec
import pytest

from chancy.wire import (
    PROTOCOL_VERSION,
    BlockingFrames,
    ErrorInfo,
    Fatal,
    FrameStream,
    Hello,
    JobDone,
    ProtocolError,
    Ready,
    RunJob,
    Shutdown,
    StopJob,
    decode,
    encode,
)
from chancy.wire._socket import SocketStream

MESSAGES = [
    Hello(version=PROTOCOL_VERSION, sys_path=["/x", ""], supervisor_pid=1, initializer="a:b"),
    Ready(version=PROTOCOL_VERSION, pid=42),
    Fatal(error=ErrorInfo(type="RuntimeError", message="no", traceback="tb")),
    RunJob(job_id="j1", job=b'{"id": "j1", "kwargs": {"x": [1, 2]}}', time_limit=2.5),
    RunJob(job_id="j2", job=b'{"id": "j2"}', max_result_size=1024),
    JobDone(job_id="j1", ok=False, meta=b"{}", error=ErrorInfo("ValueError", "boom", "tb")),
    JobDone(job_id="j2", ok=True, meta=b"{}", result=b'{"answer": [4, 2]}'),
    StopJob(job_id="j1", reason="time limit exceeded after 2.0 s", kind="time_limit"),
    Shutdown(),
]


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message: object) -> None:
    data = encode(message)  # type: ignore[arg-type]
    assert struct.unpack(">I", data[:4])[0] == len(data) - 4
    assert decode(data[4:]) == message


def test_messages_are_frozen() -> None:
    with pytest.raises(AttributeError):
        MESSAGES[1].pid = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "payload",
    [
        b"this is not msgpack",
        msgspec.msgpack.encode({"type": "no_such_message"}),
        msgspec.msgpack.encode({"type": "ready", "version": 1, "pid": 1, "extra": True}),
        msgspec.msgpack.encode({"type": "ready", "version": "1", "pid": 1}),
        msgspec.msgpack.encode({"version": 1, "pid": 1}),
        b"",
    ],
    ids=["garbage", "unknown-tag", "unknown-field", "wrong-type", "no-tag", "empty"],
)
def test_bad_payload_is_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(payload)


def test_encode_refuses_oversized() -> None:
    with pytest.raises(ProtocolError, match="exceeds the maximum"):
        encode(RunJob(job_id="x", job=b"x" * 2000), max_size=1000)


# -- blocking frames over a pipe ---------------------------------------------------------


def blocking_pair(data: bytes, max_size: int = 1 << 20) -> BlockingFrames:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data)
    os.close(write_fd)
    return BlockingFrames(read_fd, max_size=max_size)


def test_blocking_round_trip_and_clean_eof() -> None:
    frames = blocking_pair(b"".join(encode(m) for m in MESSAGES))
    assert [frames.receive() for _ in MESSAGES] == MESSAGES
    assert frames.receive() is None
    os.close(frames.fd)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x00", "truncated"),
        (frame(encode(Shutdown())[4:])[:-1] + b"", "truncated|undecodable"),
        (struct.pack(">I", 100) + b"short", "truncated"),
        (b"\xff\xff\xff\xff", "exceeds the maximum"),
        (frame(b"garbage!"), "undecodable"),
    ],
    ids=["short-header", "short-payload", "truncated-payload", "oversized", "garbage"],
)
def test_blocking_bad_frames(data: bytes, match: str) -> None:
    frames = blocking_pair(data)
    with pytest.raises(ProtocolError, match=match):
        frames.receive()
    os.close(frames.fd)


# -- async frames over a real socket pair ------------------------------------------------


async def socket_pair() -> tuple[FrameStream, socket.socket]:
    ours, theirs = socket.socketpair()
    return FrameStream(SocketStream(ours), max_size=1 << 20), theirs


@pytest.mark.anyio
async def test_async_round_trip_and_eof() -> None:
    frames, peer = await socket_pair()
    with anyio.fail_after(5):
        for message in MESSAGES:
            await frames.send(message)
        peer_frames = BlockingFrames(peer.fileno())
        assert [peer_frames.receive() for _ in MESSAGES] == MESSAGES
        # Sent byte by byte (from a thread, as the buffer fills), frames still arrive whole.
        data = b"".join(encode(m) for m in MESSAGES)

        def send_bytewise() -> None:
            for byte in data:
                peer.send(bytes([byte]))

        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, send_bytewise)
            assert [await frames.receive() for _ in MESSAGES] == MESSAGES
        peer.close()
        with pytest.raises(anyio.EndOfStream):
            await frames.receive()
    await frames.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x00", "truncated frame header"),
        (struct.pack(">I", 100) + b"short", "truncated frame"),
        (b"\xff\xff\xff\xff", "exceeds the maximum"),
        (frame(b"garbage!"), "undecodable"),
    ],
    ids=["short-header", "truncated-payload", "oversized", "garbage"],
)
async def test_async_bad_frames(data: bytes, match: str) -> None:
    frames, peer = await socket_pair()
    peer.sendall(data)
    peer.close()
    with anyio.fail_after(5), pytest.raises(ProtocolError, match=match):
        await frames.receive()
    await frames.aclose()


@pytest.mark.anyio
async def test_async_oversized_is_rejected_before_reading_payload() -> None:
    """The length is checked on the header alone: no 4 GiB buffer, no waiting for it."""
    frames, peer = await socket_pair()
    peer.sendall(b"\xff\xff\xff\xff")  # the peer stays open: nothing else will come
    with anyio.fail_after(5), pytest.raises(ProtocolError, match="exceeds the maximum"):
        await frames.receive()
    peer.close()
    await frames.aclose()


@pytest.mark.anyio
async def test_a_read_cancelled_as_the_peer_closes_is_quiet() -> None:
    """The peer closes, and the read is cancelled in the very loop turn that sees it.

    That is what a job's time limit does (cancel the read, kill the child). anyio's
    asyncio ``UNIXSocketStream`` then resolves a cancelled future from its reader callback
    and the loop reports ``InvalidStateError``; which the test runner turns into a failure.
    """
    for _ in range(20):
        ours, theirs = socket.socketpair()
        stream = SocketStream(ours)
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def read(stream: SocketStream, scope: anyio.CancelScope) -> None:
                with scope, contextlib.suppress(anyio.EndOfStream):
                    await stream.receive()  # (trio may wake it with the EOF first)

            tg.start_soon(read, stream, scope)
            await anyio.sleep(0.01)  # the reader is parked on the socket
            theirs.close()
            await anyio.lowlevel.checkpoint()  # the next turn's select sees it readable...
            scope.cancel()  # ...and this runs before the reader's callback
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()
        await stream.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await stream.receive()
