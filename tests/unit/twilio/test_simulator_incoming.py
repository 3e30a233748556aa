"""The simulator plays the recipient (simulator_incoming.py): signed incoming-message
webhooks on request (``POST /_sim/incoming``) and by rule (``reply_rules``)."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from servers import run_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.twilio.signature import validate_signature
from orchestrator.twilio.simulator import SimulatorConfig, create_app

SID = "AC" + "b" * 32
TOKEN = "incoming-test-token"
OURS = "+15005550006"


class Phone:
    """Our side: records each incoming webhook and answers TwiML."""

    def __init__(self) -> None:
        self.base_url = ""
        self.received: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.lock = threading.Lock()

    async def handle(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        with self.lock:
            self.received.append((str(request.url), form, dict(request.headers)))
        return Response("<Response><Message>ok</Message></Response>", media_type="text/xml")

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, str]]:
        deadline = time.time() + timeout
        while len(self.received) < count:
            assert time.time() < deadline, f"{len(self.received)} of {count} messages arrived"
            time.sleep(0.02)
        return [form for _url, form, _h in self.received]


@pytest.fixture
def phone() -> Iterator[Phone]:
    p = Phone()
    with run_app(Starlette(routes=[Route("/sms", p.handle, methods=["POST"])])) as url:
        p.base_url = url
        yield p


@pytest.fixture
def sim(phone: Phone) -> Iterator[str]:
    config = SimulatorConfig(account_sid=SID, auth_token=TOKEN, callback_delay=0.01)
    with run_app(create_app(config)) as url:
        yield url


def _send(sim: str, to: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    r = httpx.post(
        f"{sim}/2010-04-01/Accounts/{SID}/Messages.json",
        data={"To": to, "From": OURS, "Body": "Reply YES"},
        headers={"Authorization": f"Basic {auth}"},
    )
    assert r.status_code == 201, r.text
    answer: dict[str, Any] = r.json()
    return answer


def test_incoming_on_request_is_signed_and_shaped_like_twilios(sim: str, phone: Phone) -> None:
    assert httpx.post(f"{sim}/_sim/incoming", json={"From": "+1", "To": OURS}).status_code == 400
    url = f"{phone.base_url}/sms"
    httpx.post(f"{sim}/_sim/config", json={"incoming_url": url}).raise_for_status()
    body = {"From": "+15551230001", "To": OURS, "Body": "hi", "MediaUrl": ["https://x.test/a.png"]}
    answer = httpx.post(f"{sim}/_sim/incoming", json=body).json()
    assert answer["status"] == 200 and answer["response"].endswith(
        "<Message>ok</Message></Response>"
    )
    [(got_url, form, headers)] = phone.received
    assert answer["sid"] == form["MessageSid"] and form["MessageSid"].startswith("MM")
    assert (form["From"], form["To"], form["Body"], form["AccountSid"]) == (
        "+15551230001",
        OURS,
        "hi",
        SID,
    )
    assert (form["NumMedia"], form["MediaUrl0"]) == ("1", "https://x.test/a.png")
    assert validate_signature(got_url, list(form.items()), headers["x-twilio-signature"], TOKEN)
    log = httpx.get(f"{sim}/_sim/incoming").json()
    assert [e["params"]["MessageSid"] for e in log] == [answer["sid"]]
    assert httpx.get(f"{sim}/_sim/stats").json()["incoming_sent"] == 1
    for bad in ({"From": 1, "To": OURS}, {"From": "+1", "To": OURS, "MediaUrl": [1]}, []):
        assert httpx.post(f"{sim}/_sim/incoming", json=bad).status_code == 400


def test_reply_rules_answer_delivered_messages_only(sim: str, phone: Phone) -> None:
    bad = {"reply_rules": [{"pattern": "(", "body": "YES"}]}
    assert httpx.post(f"{sim}/_sim/config", json=bad).status_code == 400
    config = {
        "incoming_url": f"{phone.base_url}/sms",
        "reply_rules": [{"pattern": r"^\+1555123", "body": "YES", "delay": 0.05}],
    }
    httpx.post(f"{sim}/_sim/config", json=config).raise_for_status()
    _send(sim, "+15551230001")  # matches, delivered: answered
    _send(sim, "+15551233008")  # matches, but fails: nobody got it
    _send(sim, "+15559990001")  # no rule
    [form] = phone.wait_for(1)
    time.sleep(0.3)
    assert len(phone.received) == 1
    assert (form["From"], form["To"], form["Body"]) == ("+15551230001", OURS, "YES")
    httpx.post(f"{sim}/_sim/reset").raise_for_status()
    assert httpx.get(f"{sim}/_sim/config").json()["reply_rules"] == []
    assert httpx.get(f"{sim}/_sim/incoming").json() == []
