"""``orchestrator.bench.load``: the bench's aiohttp load client against servers on
127.0.0.1 (uvicorn, and a bare asyncio server for a connection dropped unanswered)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from servers import run_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.bench import load
from orchestrator.servers import free_port

TASKS_PATH = "/api/v1/processes/sending-sms/tasks"


def _tasks_app(seen: list[dict[str, object]], refuse_every: int = 0) -> Starlette:
    async def create(request: Request) -> Response:
        body = json.loads(await request.body())
        seen.append(body)
        if refuse_every and len(seen) % refuse_every == 0:
            return JSONResponse({"error": "refused"}, status_code=400)
        return JSONResponse({"id": str(len(seen))}, status_code=201)

    return Starlette(routes=[Route(TASKS_PATH, create, methods=["POST"])])


def test_every_submission_is_a_new_task_and_counted() -> None:
    seen: list[dict[str, object]] = []
    sent = [0]
    with run_app(_tasks_app(seen)) as url:
        failures = asyncio.run(load.submit(url, 50, 8, 0.0, False, sent))
    assert (failures, sent[0], len(seen)) == (0, 50, 50)
    assert len({str(b["ref"]) for b in seen}) == 50
    data = seen[0]["data"]
    assert isinstance(data, dict) and data["Number_from"] == "+15005550006"


def test_refused_submissions_are_counted_not_retried() -> None:
    seen: list[dict[str, object]] = []
    sent = [0]
    with run_app(_tasks_app(seen, refuse_every=5)) as url:
        refused: dict[str, int] = {}
        failures = asyncio.run(load.submit(url, 20, 4, 0.0, False, sent, refused))
    assert (failures, sent[0], len(seen)) == (4, 16, 20)
    assert refused == {"HTTP 400": 4}  # why, for the report


def test_a_rate_spreads_the_submissions() -> None:
    seen: list[dict[str, object]] = []
    with run_app(_tasks_app(seen)) as url:
        started = time.monotonic()
        asyncio.run(load.submit(url, 6, 2, 20.0, False, [0]))
    assert time.monotonic() - started >= 0.25  # 6 at 20/s: the last leaves after 0.25 s


def test_a_connection_dropped_unanswered_is_retried() -> None:
    """The first connection is closed as its request arrives; the POST is sent again
    (the same ref and data: an idempotent create)."""

    async def scenario() -> tuple[int, int, list[bytes]]:
        bodies: list[bytes] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                bodies.append(await reader.readexactly(length))
                if len(bodies) == 1:
                    writer.close()
                    return
                writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}")
                await writer.drain()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sent = [0]
        async with server:
            failures = await load.submit(f"http://127.0.0.1:{port}", 1, 1, 0.0, False, sent)
        return failures, sent[0], bodies

    failures, sent, bodies = asyncio.run(scenario())
    assert (failures, sent) == (0, 1)
    assert len(bodies) == 2 and bodies[0] == bodies[1]


@pytest.mark.parametrize(
    ("i", "waiting", "expected"),
    [
        (1234567, False, "+15551234567"),
        (3003, False, "+15550003001"),  # the simulator's failing endings are avoided
        (10000, False, "+15550010001"),  # ...and its never-delivered one
        (1234567, True, "+15551230000"),  # waiting: the one that never calls back
    ],
)
def test_recipients(i: int, waiting: bool, expected: str) -> None:
    assert load.recipient(i, waiting) == expected


def test_wait_http_gives_up_at_its_deadline() -> None:
    async def no_server() -> None:
        await load.wait_http(f"http://127.0.0.1:{free_port()}/healthz", time.time() + 0.3)

    with pytest.raises(RuntimeError, match="did not come up"):
        asyncio.run(no_server())


def test_wait_http_returns_once_the_server_answers() -> None:
    async def ok(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/healthz", ok)])
    with run_app(app) as url:
        asyncio.run(load.wait_http(f"{url}/healthz", time.time() + 5))
        assert asyncio.run(load.get_json(f"{url}/healthz")) == {"ok": True}
