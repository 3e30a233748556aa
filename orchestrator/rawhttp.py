"""Minimal HTTP/1.1 client for loopback load and simulator callbacks.

``orchestrator bench`` and the Twilio simulator share two cores with the server they
measure, so every millisecond they burn is taken from it. httpx spends most of its time
in its connection pool's bookkeeping (O(connections) work per request); this client keeps
a fixed pool of persistent connections per (host, port) over asyncio streams and does
only what a request needs. ``http://`` only: callers use httpx for ``https://``.

Supported: any method, path with query, extra headers, a bytes body; responses framed by
``Content-Length``, ``Transfer-Encoding: chunked`` or the end of the connection;
``Connection: close`` from the server; a per-request timeout (connect included).

Retrying: a keep-alive connection the server has closed while it sat idle is dropped
before reuse when the loop has already seen the close; when the close races the request
instead, the request is sent again on a new connection once, and only if nothing of the
response had been read and the request is *repeatable*: GET, HEAD, OPTIONS, PUT and
DELETE are; anything else only when the caller passes ``repeatable=True`` (its effect is
idempotent, e.g. a create carrying a client reference or an idempotency token).
"""

from __future__ import annotations

import asyncio
import json
from base64 import b64encode
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote, urlsplit

REPEATABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # Content-Length even when empty
MAX_HEAD = 64 * 1024  # asyncio's default stream limit; a longer head is refused


class HTTPError(Exception):
    """Base of this module's errors (names follow httpx's, so logs read the same)."""


class InvalidURL(HTTPError):
    pass


class ConnectError(HTTPError):
    pass


class RemoteProtocolError(HTTPError):
    """The server closed the connection early or answered something that is not HTTP/1.x."""


class TimeoutException(HTTPError):
    pass


class ConnectTimeout(TimeoutException):
    pass


class ReadTimeout(TimeoutException):
    pass


@dataclass
class Response:
    status_code: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


@lru_cache(maxsize=256)
def _split(url: str) -> tuple[str, int, str, str]:
    """(host, port, request target, Host and Authorization header lines) of an http://
    URL; cached because load and callbacks hit the same few URLs over and over."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise InvalidURL(f"only http:// URLs are supported, not {url!r}")
    try:
        host, port = parts.hostname, parts.port or 80
        ascii_host = host.encode("idna").decode("ascii") if host else ""
    except (ValueError, UnicodeError) as exc:  # a port that is not a number, a bad name
        raise InvalidURL(f"bad host or port in {url!r}") from exc
    if not host:
        raise InvalidURL(f"no host in {url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # Spaces, controls and non-ASCII percent-encoded (existing %XX escapes kept), as httpx
    # does: they would break the request line.
    target = quote(target, safe="!#$%&'()*+,/:;=?@[]~")
    netloc = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
    lines = f"Host: {netloc if port == 80 else f'{netloc}:{port}'}\r\n"
    if parts.username is not None:  # user:password@ in the URL is Basic auth, as in httpx
        userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        lines += f"Authorization: Basic {b64encode(userinfo.encode()).decode()}\r\n"
    return ascii_host, port, target, lines


class _Connection:
    __slots__ = ("reader", "writer", "reused")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False

    def stale(self) -> bool:
        # The loop has seen the server's FIN (or an error): do not send on it. Bytes
        # waiting on an idle connection (a server's "408 Request Timeout" before it
        # hangs up) would be read as the next request's answer: stale too.
        return (
            self.writer.is_closing()
            or self.reader.at_eof()
            or bool(getattr(self.reader, "_buffer", None))
        )

    def close(self) -> None:
        self.writer.close()  # no wait_closed: the transport finishes on its own


class _Pool:
    """Connections to one (host, port): at most ``size`` open, idle ones reused LIFO."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self.slots = asyncio.Semaphore(size)
        self.idle: list[_Connection] = []
        self.opened = 0  # connections ever made, for tests and curiosity

    async def connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_HEAD)
        except OSError as exc:
            raise ConnectError(str(exc) or type(exc).__name__) from exc
        self.opened += 1
        return _Connection(reader, writer)

    async def take(self) -> _Connection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.stale():
                conn.reused = True
                return conn
            conn.close()
        return await self.connect()

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


class Client:
    """``await client.request("POST", url, headers=..., body=...)``; ``await aclose()``.

    ``max_connections`` bounds concurrent requests per (host, port): more wait for a
    free connection, without a time limit. ``timeout`` (seconds) bounds each request
    from getting its connection to the last byte of the answer (``ReadTimeout``);
    ``connect_timeout`` bounds opening a connection (``ConnectTimeout``).
    """

    def __init__(
        self,
        *,
        max_connections: int = 16,
        timeout: float = 15.0,
        connect_timeout: float = 5.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._default_headers = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._pools: dict[tuple[str, int], _Pool] = {}

    def pool(self, host: str, port: int) -> _Pool:
        pool = self._pools.get((host, port))
        if pool is None:
            pool = self._pools[(host, port)] = _Pool(host, port, self.max_connections)
        return pool

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def post(
        self,
        url: str,
        *,
        body: bytes | str = b"",
        headers: dict[str, str] | None = None,
        repeatable: bool = False,
    ) -> Response:
        return await self.request("POST", url, body=body, headers=headers, repeatable=repeatable)

    async def get(self, url: str, *, headers: dict[str, str] | None = None) -> Response:
        return await self.request("GET", url, headers=headers)

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | str = b"",
        headers: dict[str, str] | None = None,
        repeatable: bool | None = None,
    ) -> Response:
        host, port, target, host_lines = _split(url)
        data = body.encode() if isinstance(body, str) else body
        head = [f"{method} {target} HTTP/1.1\r\n{host_lines}", self._default_headers]
        if headers:
            lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            if lines.count("\n") != len(headers) or lines.count("\r") != len(headers):
                raise ValueError(f"CR or LF inside a header: {list(headers)}")  # injection
            head.append(lines)
        if data or method in BODY_METHODS:
            head.append(f"Content-Length: {len(data)}\r\n")
        head.append("\r\n")
        raw = "".join(head).encode("latin-1") + data
        if repeatable is None:
            repeatable = method in REPEATABLE_METHODS
        pool = self.pool(host, port)
        async with pool.slots:  # no time limit: a load client queues here by design
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._exchange(pool, method, raw, repeatable)
            except TimeoutError as exc:
                msg = f"{method} {url}: no complete answer in {self.timeout:g} s"
                raise ReadTimeout(msg) from exc

    async def _exchange(self, pool: _Pool, method: str, raw: bytes, repeatable: bool) -> Response:
        for attempt in (0, 1):
            conn = await self._take(pool)
            started = False  # any byte of the response read
            try:
                conn.writer.write(raw)
                await conn.writer.drain()
                head = await conn.reader.readuntil(b"\r\n\r\n")
                started = True
                response, keep = await _read_response(conn.reader, head, method)
            except asyncio.IncompleteReadError as exc:
                conn.close()
                started = started or bool(exc.partial)
                if attempt == 0 and conn.reused and repeatable and not started:
                    continue  # the server closed an idle keep-alive connection: once more
                raise RemoteProtocolError("server closed the connection mid-answer") from exc
            except (ConnectionError, OSError) as exc:
                conn.close()
                if attempt == 0 and conn.reused and repeatable and not started:
                    continue
                raise RemoteProtocolError(f"connection lost: {exc}") from exc
            except asyncio.LimitOverrunError as exc:
                conn.close()
                raise RemoteProtocolError("response head too long") from exc
            except BaseException:  # a timeout or cancellation: the stream is mid-answer
                conn.close()
                raise
            if keep:
                pool.idle.append(conn)
            else:
                conn.close()
            return response
        raise AssertionError("unreachable")

    async def _take(self, pool: _Pool) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await pool.take()
        except TimeoutError as exc:
            raise ConnectTimeout(
                f"connect to {pool.host}:{pool.port}: no answer in {self.connect_timeout:g} s"
            ) from exc


async def _read_response(
    reader: asyncio.StreamReader, head: bytes, method: str
) -> tuple[Response, bool]:
    """The response whose head (status line and headers, ``\\r\\n\\r\\n`` included) is
    ``head``; and whether the connection may carry another request."""
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if (
        len(status_line) < 2
        or not status_line[0].startswith("HTTP/1.")
        or not (status_line[1].isdigit())
    ):
        raise RemoteProtocolError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
    status = int(status_line[1])
    if 100 <= status < 200 and status != 101:
        # Informational (100 Continue, 103 Early Hints): the real answer follows.
        return await _read_response(reader, await reader.readuntil(b"\r\n\r\n"), method)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise RemoteProtocolError(f"bad header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
    keep = headers.get("connection", "").lower() != "close" and status_line[0] == "HTTP/1.1"
    if method == "HEAD" or status in (101, 204, 304):
        return Response(status, headers, b""), keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return Response(status, headers, await _read_chunked(reader)), keep
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise RemoteProtocolError(f"bad Content-Length {length!r}")
        return Response(status, headers, await reader.readexactly(int(length))), keep
    return Response(status, headers, await reader.read()), False  # framed by the close


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise RemoteProtocolError(f"bad chunk size {size_line[:40]!r}") from exc
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, ignored
                pass
            return b"".join(parts)
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise RemoteProtocolError("chunk not followed by CRLF")
        parts.append(chunk[:-2])
