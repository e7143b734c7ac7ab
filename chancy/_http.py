"""A very small HTTP/1.1 server on anyio (asyncio and trio), for the worker's side port.

It answers GET requests only, one per connection (`Connection: close`): the request head is
capped at `MAX_HEAD` bytes and must arrive within `READ_TIMEOUT` seconds, the body of a request
is ignored, and a handler's answer is written within `WRITE_TIMEOUT` seconds. Enough for health
probes and a Prometheus scraper; not a general web server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

if TYPE_CHECKING:
    import logging

#: Largest request head (request line and headers) accepted, in bytes.
MAX_HEAD = 8192
#: Seconds a client has to send its request head.
READ_TIMEOUT = 5.0
#: Seconds an answer may take to be written.
WRITE_TIMEOUT = 5.0

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    peer: str


@dataclasses.dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def text(cls, status: int, text: str, **headers: str) -> Response:
        return cls(status, text.encode(), headers=headers)


Handler = Callable[[Request], Awaitable[Response]]


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) as a (host, port) pair; ValueError when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:9464), got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_head(head: bytes, peer: str) -> Request | Response:
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        return Response.text(400, "bad request\n")
    if not version.startswith("HTTP/1."):
        return Response.text(400, "bad request\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            return Response.text(400, "bad request\n")
        headers[name.strip().lower()] = value.strip()
    path, _, query = target.partition("?")
    return Request(method, path, query, headers, peer)


def _encode(response: Response, *, head_only: bool = False) -> bytes:
    reason = REASONS.get(response.status, "")
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: close",
        "Cache-Control: no-store",
        *(f"{name}: {value}" for name, value in response.headers.items()),
    ]
    body = b"" if head_only else response.body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _read_head(stream: anyio.abc.ByteStream) -> bytes | Response:
    buffer = b""
    with anyio.move_on_after(READ_TIMEOUT):
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                if end + 4 > MAX_HEAD:
                    return Response.text(431, "request head too large\n")
                return buffer[:end]
            if len(buffer) >= MAX_HEAD:
                return Response.text(431, "request head too large\n")
            try:
                chunk = await stream.receive(MAX_HEAD)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return b""
            buffer += chunk
    return Response.text(408, "request timeout\n")


async def handle_connection(
    stream: anyio.abc.SocketStream, handler: Handler, log: logging.Logger
) -> None:
    async with stream:
        try:
            peer = str(stream.extra(SocketAttribute.remote_address, ("", 0))[0])
        except Exception:
            peer = ""
        head = await _read_head(stream)
        if head == b"":
            return
        if isinstance(head, Response):
            response = head
        else:
            request = _parse_head(head, peer)
            if isinstance(request, Response):
                response = request
            elif request.method not in ("GET", "HEAD"):
                response = Response.text(405, "only GET is supported\n", Allow="GET, HEAD")
            else:
                try:
                    response = await handler(request)
                except Exception:
                    log.exception("http: handler failed for %s", request.path)
                    response = Response.text(500, "internal error\n")
                if request.method == "HEAD":
                    await _send(stream, _encode(response, head_only=True))
                    return
        await _send(stream, _encode(response))


async def _send(stream: anyio.abc.ByteStream, data: bytes) -> None:
    with anyio.move_on_after(WRITE_TIMEOUT):
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await stream.send(data)


async def serve(
    host: str,
    port: int,
    handler: Handler,
    *,
    log: logging.Logger,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on host:port and answer each connection with `handler`; `task_status.started`
    gets the bound port (useful with port 0)."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    async with listener:
        bound = listener.extra(SocketAttribute.local_port)
        task_status.started(bound)

        async def on_connection(stream: anyio.abc.SocketStream) -> None:
            try:
                await handle_connection(stream, handler, log)
            except Exception:  # one bad connection never stops the server
                log.exception("http: connection failed")

        await listener.serve(on_connection)
