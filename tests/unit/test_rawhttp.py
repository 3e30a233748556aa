"""``orchestrator.rawhttp`` against real servers on 127.0.0.1: uvicorn for ordinary HTTP,
and a hand-written asyncio server for the two misbehaviours uvicorn cannot be made to show
on cue (closing a keep-alive connection just as a request arrives, and mid-answer).

Connections are counted server-side, by the client's (address, port) per request.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from orchestrator import rawhttp
from orchestrator.servers import free_port


@dataclass
class Seen:
    """What the uvicorn app saw: each request's client port, and requests in flight."""

    ports: list[int] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0


def make_app(seen: Seen) -> Starlette:
    async def echo(request: Request) -> Response:
        assert request.client is not None
        seen.ports.append(request.client.port)
        body = await request.body()
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": dict(request.headers),
                "body": body.decode(),
            }
        )

    async def chunked(request: Request) -> Response:
        assert request.client is not None
        seen.ports.append(request.client.port)

        async def parts() -> AsyncIterator[bytes]:
            for i in range(5):
                yield f"part{i};".encode() * 1000
                await asyncio.sleep(0)

        return StreamingResponse(parts(), media_type="text/plain")

    async def close(request: Request) -> Response:
        assert request.client is not None
        seen.ports.append(request.client.port)
        return Response("bye", headers={"Connection": "close"})

    async def slow(request: Request) -> Response:
        assert request.client is not None
        seen.ports.append(request.client.port)
        seen.in_flight += 1
        seen.max_in_flight = max(seen.max_in_flight, seen.in_flight)
        try:
            await asyncio.sleep(float(request.query_params.get("s", "0.05")))
        finally:
            seen.in_flight -= 1
        return Response("slept")

    return Starlette(
        routes=[
            Route("/echo", echo, methods=["GET", "POST", "PUT"]),
            Route("/chunked", chunked),
            Route("/close", close),
            Route("/slow", slow),
        ]
    )


@asynccontextmanager
async def uvicorn_server(keep_alive: float = 5.0) -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()
    port = free_port()
    config = uvicorn.Config(
        make_app(seen),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_keep_alive=keep_alive,  # type: ignore[arg-type]  # uvicorn takes a float
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.should_exit = True
        await task


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(coro())


# -- uvicorn ---------------------------------------------------------------------------


def test_request_line_headers_and_body_reach_the_server() -> None:
    async def main() -> None:
        async with (
            uvicorn_server() as (url, _seen),
            rawhttp.Client(headers={"User-Agent": "TwilioProxy/1.1"}) as client,
        ):
            r = await client.post(
                f"{url}/echo?a=1&b=two", body="x=1&y=%C3%A9", headers={"X-Sig": "abc"}
            )
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/json"
            assert int(r.headers["content-length"]) == len(r.content)
            got = r.json()
            assert got["method"] == "POST" and got["path"] == "/echo"
            assert got["query"] == "a=1&b=two"
            assert got["body"] == "x=1&y=%C3%A9"
            assert got["headers"]["host"] == url.removeprefix("http://")
            assert got["headers"]["x-sig"] == "abc"
            assert got["headers"]["user-agent"] == "TwilioProxy/1.1"
            assert got["headers"]["content-length"] == str(len("x=1&y=%C3%A9"))
            got = (await client.get(f"{url}/echo")).json()
            assert got["method"] == "GET" and got["body"] == ""
            assert "content-length" not in got["headers"]
            got = (await client.request("PUT", f"{url}/echo")).json()
            assert got["headers"]["content-length"] == "0"  # a PUT says its body is empty

    run(main)


def test_keep_alive_reuses_one_connection() -> None:
    async def main() -> None:
        async with uvicorn_server() as (url, seen), rawhttp.Client() as client:
            for i in range(10):
                r = await client.post(f"{url}/echo", body=str(i))
                assert r.json()["body"] == str(i)
            assert len(seen.ports) == 10
            assert len(set(seen.ports)) == 1  # one TCP connection carried all ten
            assert client.pool("127.0.0.1", int(url.rsplit(":", 1)[1])).opened == 1

    run(main)


def test_chunked_response_is_reassembled_and_connection_kept() -> None:
    async def main() -> None:
        async with uvicorn_server() as (url, seen), rawhttp.Client() as client:
            for _ in range(2):
                r = await client.get(f"{url}/chunked")
                assert r.headers.get("transfer-encoding") == "chunked"
                assert "content-length" not in r.headers
                assert r.text == "".join(f"part{i};" * 1000 for i in range(5))
            assert len(set(seen.ports)) == 1

    run(main)


def test_connection_close_from_server_opens_a_new_connection() -> None:
    async def main() -> None:
        async with uvicorn_server() as (url, seen), rawhttp.Client() as client:
            for _ in range(3):
                r = await client.get(f"{url}/close")
                assert (r.status_code, r.text, r.headers["connection"]) == (200, "bye", "close")
            assert len(set(seen.ports)) == 3
            # After a close, a keep-alive answer leaves its connection in the pool.
            await client.get(f"{url}/echo")
            await client.get(f"{url}/echo")
            assert len(set(seen.ports)) == 4

    run(main)


def test_idle_connection_closed_by_server_is_replaced() -> None:
    async def main() -> None:
        async with uvicorn_server(keep_alive=0.2) as (url, seen), rawhttp.Client() as client:
            assert (await client.post(f"{url}/echo", body="1")).status_code == 200
            await asyncio.sleep(0.6)  # uvicorn closes the idle keep-alive connection
            # Not repeatable, so it must not go out on the dead connection: it is dropped
            # before use and the POST goes out once, on a new one.
            r = await client.post(f"{url}/echo", body="2")
            assert r.json()["body"] == "2"
            assert len(seen.ports) == 2 and len(set(seen.ports)) == 2

    run(main)


def test_timeout_raises_a_clear_error_and_frees_the_connection() -> None:
    async def main() -> None:
        async with (
            uvicorn_server() as (url, seen),
            rawhttp.Client(timeout=0.2, max_connections=1) as client,
        ):
            started = time.monotonic()
            with pytest.raises(rawhttp.ReadTimeout) as caught:
                await client.get(f"{url}/slow?s=2")
            assert time.monotonic() - started < 1.5
            assert f"GET {url}/slow?s=2" in str(caught.value) and "0.2 s" in str(caught.value)
            assert isinstance(caught.value, rawhttp.TimeoutException)
            # The only slot is free again, on a new connection (the old one was mid-answer).
            assert (await client.get(f"{url}/slow?s=0")).text == "slept"
            assert len(set(seen.ports)) == 2

    run(main)


def test_concurrency_is_bounded_by_the_pool() -> None:
    async def main() -> None:
        async with uvicorn_server() as (url, seen), rawhttp.Client(max_connections=3) as client:
            answers = await asyncio.gather(*(client.get(f"{url}/slow") for _ in range(12)))
            assert [r.text for r in answers] == ["slept"] * 12
            assert seen.max_in_flight == 3
            assert len(set(seen.ports)) == 3

    run(main)


def test_refused_connect_and_unsupported_urls() -> None:
    async def main() -> None:
        async with rawhttp.Client() as client:
            with pytest.raises(rawhttp.ConnectError):
                await client.get(f"http://127.0.0.1:{free_port()}/x")
            for bad in ("https://127.0.0.1/x", "http:///x", "http://127.0.0.1:port/x"):
                with pytest.raises(rawhttp.InvalidURL):
                    await client.get(bad)

    run(main)


# -- a misbehaving server ----------------------------------------------------------------


@dataclass
class Scripted:
    """Answers each request on a connection with the next scripted action: bytes to send
    (the connection stays open) or None (close without answering)."""

    script: list[bytes | None]
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                action = self.script.pop(0)
                if action is None:
                    break
                writer.write(action)
                await writer.drain()
                if not action.endswith(b"\r\n\r\nok"):  # a partial answer: hang up
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@asynccontextmanager
async def scripted(script: list[bytes | None]) -> AsyncIterator[tuple[str, Scripted]]:
    handler = Scripted(script)
    server = await asyncio.start_server(handler.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", handler


def test_request_on_a_connection_closed_under_it_is_retried_once_if_repeatable() -> None:
    async def main() -> None:
        # The second request meets a connection the server closes without answering.
        async with scripted([OK, None, OK]) as (url, server), rawhttp.Client() as client:
            assert (await client.post(f"{url}/a", body="1")).text == "ok"
            r = await client.post(f"{url}/a", body="2", repeatable=True)
            assert r.text == "ok"
            assert [req.endswith(b"\r\n\r\n2") for req in server.requests] == [False, True, True]
            assert server.connections == 2

    run(main)


def test_non_repeatable_request_is_not_resent() -> None:
    async def main() -> None:
        async with scripted([OK, None, OK]) as (url, server), rawhttp.Client() as client:
            await client.post(f"{url}/a", body="1")
            with pytest.raises(rawhttp.RemoteProtocolError):
                await client.post(f"{url}/a", body="2")  # a POST is not repeatable by default
            assert len(server.requests) == 2
            # GET is repeatable by default.
            assert (await client.get(f"{url}/a")).text == "ok"

    run(main)


def test_partial_answer_is_never_retried() -> None:
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"

    async def main() -> None:
        async with scripted([OK, partial, OK]) as (url, server), rawhttp.Client() as client:
            await client.get(f"{url}/a")
            with pytest.raises(rawhttp.RemoteProtocolError, match="mid-answer"):
                await client.get(f"{url}/a")
            assert len(server.requests) == 2  # not resent, although GET is repeatable

    run(main)


def test_body_framed_by_close_and_bad_status_line() -> None:
    unframed = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"

    async def main() -> None:
        async with scripted([unframed]) as (url, server), rawhttp.Client() as client:
            r = await client.get(f"{url}/a")
            assert r.text == "until the end"
        async with scripted([b"SSH-2.0-x\r\n\r\n"]) as (url, server), rawhttp.Client() as client:
            with pytest.raises(rawhttp.RemoteProtocolError, match="not an HTTP"):
                await client.get(f"{url}/a")

    run(main)


def test_response_json_helper() -> None:
    body = json.dumps({"a": [1, 2]}).encode()
    answer = b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    async def main() -> None:
        async with scripted([answer]) as (url, _server), rawhttp.Client() as client:
            r = await client.post(f"{url}/a", body=b"{}")
            assert (r.status_code, r.json()) == (201, {"a": [1, 2]})

    run(main)


def test_credentials_in_the_url_become_basic_auth_and_headers_cannot_inject() -> None:
    async def main() -> None:
        async with uvicorn_server() as (url, _seen), rawhttp.Client() as client:
            with_auth = url.replace("http://", "http://ops:p%40ss@")
            got = (await client.get(f"{with_auth}/echo?q=a b")).json()
            assert got["headers"]["authorization"] == "Basic b3BzOnBAc3M="  # ops:p@ss
            assert got["headers"]["host"] == url.removeprefix("http://")
            assert got["query"] == "q=a%20b"
            with pytest.raises(ValueError, match="CR or LF"):
                await client.get(f"{url}/echo", headers={"X-A": "1\r\nX-Evil: 1"})

    run(main)


def test_informational_answers_are_skipped() -> None:
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"

    async def main() -> None:
        async with scripted([hints + OK, OK]) as (url, server), rawhttp.Client() as client:
            assert (await client.get(f"{url}/a")).text == "ok"
            assert (await client.get(f"{url}/a")).text == "ok"  # nothing left over
            assert server.connections == 1

    run(main)


def test_idle_connection_with_unsolicited_bytes_is_not_reused() -> None:
    # Some servers send "408 Request Timeout" on an idle keep-alive connection, then close.
    goodbye = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    async def main() -> None:
        async with scripted([OK + goodbye, OK]) as (url, server), rawhttp.Client() as client:
            assert (await client.post(f"{url}/a", body="1")).text == "ok"
            await asyncio.sleep(0.1)
            r = await client.post(f"{url}/a", body="2")  # not repeatable: must go out once
            assert (r.status_code, r.text) == (200, "ok")
            assert server.connections == 2 and len(server.requests) == 2

    run(main)
