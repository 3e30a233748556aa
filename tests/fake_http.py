"""A scriptable HTTP/1.1 server on a real loopback socket, for testing how an HTTP client
meets each way a server can fail: answers, dropped connections, silence, resets,
garbage, a body cut short; and, with no server or a full accept queue, connections
refused or never made. Real sockets, so what is tested is what the client library
actually raises, not what a mock was told to raise."""

from __future__ import annotations

import asyncio
import enum
import json
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from multidict import CIMultiDict
from yarl import URL


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    @classmethod
    def json(cls, status: int, data: Any, **headers: str) -> Reply:
        return cls(
            status, json.dumps(data).encode(), {"Content-Type": "application/json", **headers}
        )

    @classmethod
    def text(cls, status: int, text: str, **headers: str) -> Reply:
        return cls(status, text.encode(), {"Content-Type": "text/html", **headers})

    def raw(self) -> bytes:
        head = [f"HTTP/1.1 {self.status} {self.reason}".rstrip()]
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        head.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + self.body


class Fail(enum.Enum):
    """What the server does instead of answering, after reading the whole request."""

    DROP = "closes the connection"
    HANG = "never answers"
    RESET = "resets the connection (RST)"
    GARBAGE = "answers something that is not HTTP"
    SHORT_BODY = "promises a longer body than it sends, then closes"


@dataclass
class Seen:
    """A request as it arrived on the wire."""

    method: str
    target: str
    headers: CIMultiDict[str]
    content: bytes

    @property
    def url(self) -> URL:
        return URL(f"http://{self.headers.get('Host', 'localhost')}{self.target}", encoded=True)


Answer = Reply | Fail | Callable[[Seen], Reply]


class FakeServer:
    """Plays ``answers`` in order, one per request (the last one again and again).
    ``async with`` binds a port; it listens at once unless ``listening=False``, in which
    case connections are refused until ``listen()``."""

    def __init__(
        self, *answers: Answer, listening: bool = True, tls: ssl.SSLContext | None = None
    ) -> None:
        self.answers = list(answers)
        self._tls = tls
        self.requests: list[Seen] = []
        self._listening = listening
        self._sock = socket.socket()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"{'https' if self._tls else 'http'}://{host}:{port}"

    async def __aenter__(self) -> FakeServer:
        self._sock.bind(("127.0.0.1", 0))
        if self._listening:
            await self.listen()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in list(self._handlers):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._sock.close()

    async def listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, sock=self._sock, ssl=self._tls)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while (seen := await _read_request(reader)) is not None:
                self.requests.append(seen)
                answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
                if isinstance(answer, Fail):
                    await _fail(answer, writer)
                    return
                reply = answer if isinstance(answer, Reply) else answer(seen)
                writer.write(reply.raw())
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Seen | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers: CIMultiDict[str] = CIMultiDict()
    for line in filter(None, lines):
        name, _, value = line.partition(":")
        headers.add(name.strip(), value.strip())
    length = int(headers.get("Content-Length", "0"))
    content = await reader.readexactly(length) if length else b""
    return Seen(method, target, headers, content)


async def _fail(how: Fail, writer: asyncio.StreamWriter) -> None:
    if how is Fail.HANG:
        await asyncio.Event().wait()  # until the server is closed
    elif how is Fail.RESET:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    elif how is Fail.GARBAGE:
        writer.write(b"this is not HTTP at all\r\n\r\n")
        await writer.drain()
    elif how is Fail.SHORT_BODY:
        head = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 200"
        writer.write(head + b'\r\n\r\n{"sid": "SM')
        await writer.drain()


class FullListener:
    """A port whose accept queue is full: a new connection is never made (its SYN is
    dropped), so a client's connect times out, as with a host that is down."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._fillers: list[socket.socket] = []

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FullListener:
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(0)
        for _ in range(4):  # more than the queue holds (Linux: backlog + 1)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(self._sock.getsockname())
            self._fillers.append(filler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in (*self._fillers, self._sock):
            sock.close()
