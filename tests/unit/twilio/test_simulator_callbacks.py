"""The simulator's callback POSTs (``simulator/callbacks.py``, over aiohttp) against a
receiver on 127.0.0.1: signed form bodies, kept-alive connections, connections the
receiver closed while idle, retries and the log of attempts."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qsl

from servers import run_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from orchestrator.servers import free_port
from orchestrator.twilio.signature import SIGNATURE_HEADER, compute_signature
from orchestrator.twilio.simulator.callbacks import (
    IDEMPOTENCY_HEADER,
    USER_AGENT,
    CallbackSender,
)
from orchestrator.twilio.simulator.config import SimulatorConfig

CONFIG = SimulatorConfig(callback_retry_delay=0.05)


def _receiver(seen: list[tuple[str, dict[str, str], dict[str, str]]], fail: int = 0) -> Starlette:
    async def status(request: Request) -> Response:
        assert request.client is not None
        form = dict(parse_qsl((await request.body()).decode()))
        seen.append((f"{request.client.host}:{request.client.port}", form, dict(request.headers)))
        if len(seen) <= fail:
            return PlainTextResponse("not now", status_code=503)
        return PlainTextResponse("")

    return Starlette(routes=[Route("/status", status, methods=["POST"])])


def _stats() -> dict[str, int]:
    return {"callbacks_sent": 0, "callbacks_failed": 0}


def test_callbacks_are_signed_and_share_a_kept_alive_connection() -> None:
    seen: list[tuple[str, dict[str, str], dict[str, str]]] = []
    sender = CallbackSender(CONFIG, _stats())

    async def send(url: str) -> None:
        for n in range(3):
            await sender._deliver(url, {"MessageSid": f"SM{n}", "MessageStatus": "sent"}, "t")
        await sender.close()

    with run_app(_receiver(seen)) as base:
        asyncio.run(send(f"{base}/status"))
    assert [form["MessageSid"] for _peer, form, _h in seen] == ["SM0", "SM1", "SM2"]
    assert len({peer for peer, _f, _h in seen}) == 1  # one connection, kept alive
    _peer, form, headers = seen[0]
    assert headers[SIGNATURE_HEADER.lower()] == compute_signature(
        f"{base}/status", form, CONFIG.auth_token
    )
    assert headers[IDEMPOTENCY_HEADER.lower()] == "t"
    assert headers["user-agent"] == USER_AGENT
    assert sender.stats["callbacks_sent"] == 3


def test_a_connection_the_receiver_closed_while_idle_is_not_reused() -> None:
    """The receiver drops idle connections after 0.3 s; a callback sent after a longer
    pause goes out on a new connection, in one attempt."""
    seen: list[tuple[str, dict[str, str], dict[str, str]]] = []
    sender = CallbackSender(CONFIG, _stats())

    async def send(url: str) -> None:
        await sender._deliver(url, {"MessageSid": "SM1"}, "a")
        await asyncio.sleep(0.8)
        await sender._deliver(url, {"MessageSid": "SM2"}, "b")
        await sender.close()

    with run_app(_receiver(seen), timeout_keep_alive=0.3) as base:
        asyncio.run(send(f"{base}/status"))
    assert len(seen) == 2 and seen[0][0] != seen[1][0]
    assert [entry["attempt"] for entry in sender.log] == [0, 0]
    assert sender.stats == {"callbacks_sent": 2, "callbacks_failed": 0}


def test_retries_follow_the_connection_override_and_are_logged() -> None:
    seen: list[tuple[str, dict[str, str], dict[str, str]]] = []
    sender = CallbackSender(CONFIG, _stats())

    async def send(url: str) -> None:
        await sender._deliver(url, {"MessageSid": "SM1"}, "t")
        await sender.close()

    with run_app(_receiver(seen, fail=2)) as base:
        asyncio.run(send(f"{base}/status#rc=2"))  # the fragment is never sent or signed
    assert [entry["result"] for entry in sender.log] == [503, 503, 200]
    assert {entry["url"] for entry in sender.log} == {f"{base}/status"}
    assert sender.stats["callbacks_sent"] == 1


def test_an_unreachable_receiver_is_logged_by_error_name() -> None:
    sender = CallbackSender(CONFIG, _stats())

    async def send() -> None:
        await sender._deliver(f"http://127.0.0.1:{free_port()}/status", {"MessageSid": "S"}, "t")
        await sender.close()

    started = time.monotonic()
    asyncio.run(send())
    assert time.monotonic() - started < 5
    results = [entry["result"] for entry in sender.log]
    assert len(results) == 2 and all(isinstance(r, str) for r in results), results
    assert sender.stats == {"callbacks_sent": 0, "callbacks_failed": 1}
