"""The Twilio simulator, driven over real HTTP by httpx and by the official twilio client.

Two uvicorn servers run for the whole module (``tests/servers.py``): the simulator and a
callback receiver that records every status callback; each test resets both. Signatures
are checked with twilio's own ``RequestValidator``, not with our ``signature.py``.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from servers import run_app  # tests/ is on sys.path (pytest rootdir-relative import)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from orchestrator.twilio.simulator import (
    IDEMPOTENCY_HEADER,
    OutcomeRule,
    SimulatorConfig,
    create_app,
    serve_simulator,
)
from orchestrator.twilio.simulator.records import num_segments
from orchestrator.twilio.simulator.rules import match_rule

SID = "AC" + "1" * 32
TOKEN = "sim-test-token"
FROM = "+14155550000"
CALLER_IDS = [f"+1415555010{i}" for i in range(5)]  # 5 ids, 2 per page: 3 pages
WAIT = 5.0  # upper bound of every wait loop


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.005)


@dataclass
class Captured:
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    answered: int


@dataclass
class Receiver:
    """Records every callback; ``fail_next`` answers that many with 500."""

    base_url: str = ""
    fail_next: int = 0
    items: list[Captured] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle(self, request: Request) -> Response:
        body = (await request.body()).decode()
        with self.lock:
            answered = 500 if self.fail_next > 0 else 200
            self.fail_next -= answered == 500
            self.items.append(
                Captured(str(request.url), dict(parse_qsl(body)), dict(request.headers), answered)
            )
        return PlainTextResponse("", status_code=answered)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/cb/{name:path}", self.handle, methods=["POST"])])

    def url(self, name: str = "sms") -> str:
        return f"{self.base_url}/cb/{name}?case=1"

    def clear(self) -> None:
        with self.lock:
            self.items.clear()
            self.fail_next = 0

    def of(self, sid: str, *, only_ok: bool = True) -> list[Captured]:
        with self.lock:
            return [
                c
                for c in self.items
                if sid in (c.params.get("MessageSid"), c.params.get("CallSid"))
                and (c.answered == 200 or not only_ok)
            ]

    def wait(self, sid: str, count: int, *, only_ok: bool = True) -> list[Captured]:
        wait_until(lambda: len(self.of(sid, only_ok=only_ok)) >= count)
        time.sleep(0.08)  # a few callback delays: nothing more may arrive
        found = self.of(sid, only_ok=only_ok)
        assert len(found) == count, [c.params for c in found]
        return found


def assert_signed(captured: Captured) -> None:
    signature = captured.headers["x-twilio-signature"]
    assert RequestValidator(TOKEN).validate(captured.url, captured.params, signature)
    assert captured.headers["content-type"] == "application/x-www-form-urlencoded"


@dataclass
class Sim:
    url: str
    config: SimulatorConfig

    @property
    def api(self) -> str:
        return f"{self.url}/2010-04-01/Accounts/{SID}"

    def configure(self, **changes: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/_sim/config", json=changes)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def stats(self) -> dict[str, int]:
        result: dict[str, int] = httpx.get(f"{self.url}/_sim/stats").json()
        return result

    def post(self, resource: str, data: Any, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.api}/{resource}", data=data, auth=(SID, TOKEN), **kwargs)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    recv = Receiver()
    with run_app(recv.app()) as base_url:
        recv.base_url = base_url
        yield recv


@pytest.fixture(scope="module")
def sim_server() -> Iterator[Sim]:
    config = SimulatorConfig(
        account_sid=SID,
        auth_token=TOKEN,
        callback_delay=0.01,
        callback_retry_delay=0.02,
        caller_ids=list(CALLER_IDS),
        page_size_caller_ids=2,
    )
    with run_app(create_app(config)) as base_url:
        yield Sim(base_url, config)


@pytest.fixture
def sim(sim_server: Sim, receiver: Receiver) -> Sim:
    assert httpx.post(f"{sim_server.url}/_sim/reset").status_code == 200
    receiver.clear()
    return sim_server


@pytest.fixture
def client(sim: Sim) -> Client:
    twilio = Client(SID, TOKEN)
    twilio.api.base_url = sim.url
    return twilio


MESSAGE_KEYS = {
    "account_sid", "api_version", "body", "date_created", "date_sent", "date_updated",
    "direction", "error_code", "error_message", "from", "messaging_service_sid", "num_media",
    "num_segments", "price", "price_unit", "sid", "status", "subresource_uris", "to", "uri",
}  # fmt: skip
RFC2822 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$")


# -- messages: create, fetch, list -------------------------------------------------------


def test_create_fetch_list_with_twilio_client(client: Client, sim: Sim) -> None:
    message = client.messages.create(to="+14155551234", from_=FROM, body="hello")
    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert (message.status, message.num_segments, message.num_media) == ("queued", "1", "0")
    assert message.uri == f"/2010-04-01/Accounts/{SID}/Messages/{message.sid}.json"
    assert message.date_created is not None and message.date_created.tzinfo is not None
    assert message.date_sent is None and message.error_code is None
    assert message.direction == "outbound-api" and message.api_version == "2010-04-01"

    raw = httpx.get(f"{sim.api}/Messages/{message.sid}.json", auth=(SID, TOKEN)).json()
    assert set(raw) == MESSAGE_KEYS
    assert RFC2822.match(raw["date_created"])
    assert raw["subresource_uris"]["media"].endswith(f"/Messages/{message.sid}/Media.json")

    # Without a StatusCallback the status still advances, so polling sees it.
    wait_until(lambda: client.messages(message.sid).fetch().status == "delivered")
    assert client.messages(message.sid).fetch().date_sent is not None

    others = [
        client.messages.create(to="+14155551234", from_="+14155559999", body=f"n{i}")
        for i in range(2)
    ]
    listed = client.messages.list(to="+14155551234", page_size=2)
    assert [m.sid for m in listed] == [others[1].sid, others[0].sid, message.sid]
    assert [m.sid for m in client.messages.list(from_=FROM)] == [message.sid]
    assert len(client.messages.list(date_sent=datetime.now(UTC))) == 3
    hour = timedelta(hours=1)
    assert len(client.messages.list(date_sent_after=datetime.now(UTC) - hour)) == 3
    assert client.messages.list(date_sent_before=datetime.now(UTC) - hour) == []
    assert client.messages.list(date_sent=datetime.now(UTC) + timedelta(days=2)) == []


def test_list_page_shape(client: Client, sim: Sim) -> None:
    for i in range(3):
        client.messages.create(to="+14155551234", from_=FROM, body=f"m{i}")
    page = httpx.get(f"{sim.api}/Messages.json", params={"PageSize": 2}, auth=(SID, TOKEN)).json()
    assert set(page) - {"messages"} == {
        "first_page_uri", "next_page_uri", "previous_page_uri", "page", "page_size",
        "start", "end", "uri",
    }  # fmt: skip
    assert (page["page"], page["page_size"], page["start"], page["end"]) == (0, 2, 0, 1)
    assert page["previous_page_uri"] is None
    assert page["next_page_uri"].startswith(f"/2010-04-01/Accounts/{SID}/Messages.json?")
    second = httpx.get(sim.url + page["next_page_uri"], auth=(SID, TOKEN)).json()
    assert (len(second["messages"]), second["next_page_uri"], second["start"]) == (1, None, 2)
    bad = httpx.get(f"{sim.api}/Messages.json?DateSent=soon", auth=(SID, TOKEN))
    assert bad.status_code == 400


def test_mms_and_messaging_service(client: Client, sim: Sim) -> None:
    mms = client.messages.create(
        to="+14155551234", from_=FROM, media_url=["https://x.test/a.png", "https://x.test/b"]
    )
    assert re.fullmatch(r"MM[0-9a-f]{32}", mms.sid) and mms.num_media == "2"
    service = "MG" + "2" * 32
    sms = client.messages.create(to="+14155551234", messaging_service_sid=service, body="x")
    assert sms.messaging_service_sid == service and sms.status == "queued"
    too_many = sim.post(
        "Messages.json",
        {"To": "+14155551234", "From": FROM, "MediaUrl": [f"https://x/{i}" for i in range(11)]},
    )
    assert too_many.json()["code"] == 21623


def test_long_body_segments(client: Client) -> None:
    assert client.messages.create(to="+14155551234", from_=FROM, body="a" * 161).num_segments == "2"
    assert num_segments("a" * 160) == 1 and num_segments("é" * 160) == 1
    assert num_segments("€" * 80) == 1 and num_segments("€" * 81) == 2  # 2 septets each
    assert num_segments("ж" * 70) == 1 and num_segments("ж" * 71) == 2
    assert num_segments("😀" * 35) == 1 and num_segments("😀" * 36) == 2  # 2 UTF-16 units


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_", "to", "status", "code"),
    [
        ("+15005550001", "+14155551234", 400, 21212),
        ("+15005550007", "+14155551234", 400, 21606),
        ("+15005550008", "+14155551234", 429, 21611),
        ("+15005550006", "+15005550001", 400, 21211),
        ("+15005550006", "+15005550002", 400, 21612),
        ("+15005550006", "+15005550003", 400, 21408),
        ("+15005550006", "+15005550004", 400, 21610),
        ("+15005550006", "+15005550009", 400, 21614),
        ("+15005550006", "4155551234", 400, 21211),
    ],
)
def test_message_magic_numbers(
    client: Client, sim: Sim, from_: str, to: str, status: int, code: int
) -> None:
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=to, from_=from_, body="magic")
    assert (caught.value.status, caught.value.code) == (status, code)
    assert sim.stats()["messages_created"] == 0


def test_magic_valid_from_succeeds(client: Client) -> None:
    message = client.messages.create(to="+14155551234", from_="+15005550006", body="ok")
    assert message.status == "queued"


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({}, 21604),
        ({"To": "+14155551234", "Body": "x"}, 21603),
        ({"To": "+14155551234", "From": FROM}, 21602),
        ({"To": "+14155551234", "From": FROM, "Body": ""}, 21602),
        ({"To": "+14155551234", "From": FROM, "Body": "x" * 1601}, 21617),
        ({"To": "+0123", "From": FROM, "Body": "x"}, 21211),
    ],
)
def test_message_validation_error_bodies(sim: Sim, form: dict[str, str], code: int) -> None:
    response = sim.post("Messages.json", form)
    assert response.status_code == 400
    body = response.json()
    assert body == {
        "code": code,
        "message": body["message"],
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": 400,
    }
    assert isinstance(body["message"], str) and body["message"]


def test_body_of_exactly_1600_characters_is_accepted(sim: Sim) -> None:
    form = {"To": "+14155551234", "From": FROM, "Body": "x" * 1600}
    assert sim.post("Messages.json", form).status_code == 201


AUTHENTICATE = {
    "code": 20003,
    "message": "Authenticate",
    "more_info": "https://www.twilio.com/docs/errors/20003",
    "status": 401,
}


@pytest.mark.parametrize(
    ("path_sid", "auth"),
    [
        (SID, (SID, "wrong")),
        (SID, None),
        (SID, ("AC" + "9" * 32, TOKEN)),
        ("AC" + "9" * 32, (SID, TOKEN)),
        (SID, ("someone", TOKEN)),
    ],
)
def test_bad_auth_is_401(sim: Sim, path_sid: str, auth: tuple[str, str] | None) -> None:
    url = f"{sim.url}/2010-04-01/Accounts/{path_sid}/Messages.json"
    form = {"To": "+14155551234", "From": FROM, "Body": "x"}
    for response in (httpx.post(url, data=form, auth=auth), httpx.get(url, auth=auth)):
        assert response.status_code == 401
        assert response.json() == AUTHENTICATE
    assert sim.stats()["messages_created"] == 0


def test_bad_auth_with_twilio_client_and_api_key(sim: Sim) -> None:
    wrong = Client(SID, "nope")
    wrong.api.base_url = sim.url
    with pytest.raises(TwilioRestException) as caught:
        wrong.messages.create(to="+14155551234", from_=FROM, body="x")
    assert (caught.value.status, caught.value.code) == (401, 20003)
    # An API key (SK…) with its own secret, the Account SID in the URL; the auth token
    # is not a key's secret.
    key = "SK" + "3" * 32
    httpx.post(f"{sim.url}/_sim/config", json={"api_keys": {key: "key-secret"}}).raise_for_status()
    for secret, works in (("key-secret", True), (TOKEN, False)):
        keyed = Client(key, secret, SID)
        keyed.api.base_url = sim.url
        if works:
            assert keyed.messages.create(to="+14155551234", from_=FROM, body="x").status == "queued"
        else:
            with pytest.raises(TwilioRestException) as caught:
                keyed.messages.create(to="+14155551234", from_=FROM, body="x")
            assert caught.value.code == 20003


def test_not_found(client: Client, sim: Sim) -> None:
    sid = "SM" + "f" * 32
    with pytest.raises(TwilioRestException) as caught:
        client.messages(sid).fetch()
    assert (caught.value.status, caught.value.code) == (404, 20404)
    path = f"/2010-04-01/Accounts/{SID}/Messages/{sid}.json"
    assert httpx.get(sim.url + path, auth=(SID, TOKEN)).json() == {
        "code": 20404,
        "message": f"The requested resource {path} was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }
    assert httpx.get(f"{sim.api}/Nothing.json", auth=(SID, TOKEN)).json()["code"] == 20404
    assert httpx.delete(f"{sim.api}/Messages.json", auth=(SID, TOKEN)).status_code == 405


# -- status callbacks ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "expected", "final"),
    [
        ("+14155551234", [("sent", None), ("delivered", None)], ("delivered", None)),
        ("+14155553003", [("sent", None), ("undelivered", "30003")], ("undelivered", 30003)),
        ("+14155553005", [("sent", None), ("undelivered", "30005")], ("undelivered", 30005)),
        ("+14155553008", [("failed", "30008")], ("failed", 30008)),
    ],
)
def test_callback_sequences(
    client: Client,
    sim: Sim,
    receiver: Receiver,
    to: str,
    expected: list[tuple[str, str | None]],
    final: tuple[str, int | None],
) -> None:
    message = client.messages.create(to=to, from_=FROM, body="cb", status_callback=receiver.url())
    callbacks = receiver.wait(message.sid, len(expected))
    assert [(c.params["MessageStatus"], c.params.get("ErrorCode")) for c in callbacks] == expected
    for callback in callbacks:
        assert_signed(callback)
        params = callback.params
        assert params["SmsStatus"] == params["MessageStatus"]
        assert (params["AccountSid"], params["From"], params["To"]) == (SID, FROM, to)
        assert params["SmsSid"] == params["MessageSid"] == message.sid
        assert params["ApiVersion"] == "2010-04-01"
        assert "MessagingServiceSid" not in params
    tokens = [c.headers[IDEMPOTENCY_HEADER.lower()] for c in callbacks]
    assert len(set(tokens)) == len(tokens)
    fetched = client.messages(message.sid).fetch()
    assert (fetched.status, fetched.error_code) == final
    assert (fetched.error_message is None) == (final[1] is None)
    assert sim.stats()["callbacks_sent"] == len(expected)


def test_callbacks_with_messaging_service(client: Client, sim: Sim, receiver: Receiver) -> None:
    service = "MG" + "4" * 32
    message = client.messages.create(
        to="+14155551234", messaging_service_sid=service, body="x", status_callback=receiver.url()
    )
    assert message.from_ is None
    for callback in receiver.wait(message.sid, 2):
        assert_signed(callback)
        assert callback.params["MessagingServiceSid"] == service
        assert callback.params["From"] == "+15005550006"
    assert client.messages(message.sid).fetch().from_ == "+15005550006"


def test_duplicate_callbacks_share_token(client: Client, sim: Sim, receiver: Receiver) -> None:
    sim.configure(duplicate_callbacks=True)
    message = client.messages.create(
        to="+14155551234", from_=FROM, body="x", status_callback=receiver.url()
    )
    callbacks = receiver.wait(message.sid, 4)
    statuses = [c.params["MessageStatus"] for c in callbacks]
    assert statuses == ["sent", "sent", "delivered", "delivered"]
    tokens = [c.headers[IDEMPOTENCY_HEADER.lower()] for c in callbacks]
    assert tokens[0] == tokens[1] and tokens[2] == tokens[3] and tokens[0] != tokens[2]
    for callback in callbacks:
        assert_signed(callback)
    assert sim.stats()["callbacks_sent"] == 4


def test_reordered_callbacks(client: Client, sim: Sim, receiver: Receiver) -> None:
    sim.configure(reorder_callbacks=True)
    message = client.messages.create(
        to="+14155553003", from_=FROM, body="x", status_callback=receiver.url()
    )
    callbacks = receiver.wait(message.sid, 2)
    assert [c.params["MessageStatus"] for c in callbacks] == ["undelivered", "sent"]
    # The late 'sent' does not move the message backwards.
    assert client.messages(message.sid).fetch().status == "undelivered"


def test_early_callback_arrives_before_create_returns(
    client: Client, sim: Sim, receiver: Receiver
) -> None:
    sim.configure(early_callbacks=True, callback_delay=0.2)
    message = client.messages.create(
        to="+14155551234", from_=FROM, body="x", status_callback=receiver.url()
    )
    assert message.status == "queued"  # the answer still shows the initial status
    early = receiver.of(message.sid)  # no waiting: it is already there
    assert [c.params["MessageStatus"] for c in early] == ["sent"]
    assert_signed(early[0])
    assert [c.params["MessageStatus"] for c in receiver.wait(message.sid, 2)] == [
        "sent",
        "delivered",
    ]


def test_lost_callbacks_still_advance_status(client: Client, sim: Sim, receiver: Receiver) -> None:
    sim.configure(lose_callbacks=True)
    message = client.messages.create(
        to="+14155553003", from_=FROM, body="x", status_callback=receiver.url()
    )
    wait_until(lambda: client.messages(message.sid).fetch().status == "undelivered")
    time.sleep(0.05)
    assert receiver.of(message.sid, only_ok=False) == []
    assert sim.stats()["callbacks_sent"] == 0


def test_lost_rule_0000_stays_sent_without_callbacks(
    client: Client, sim: Sim, receiver: Receiver
) -> None:
    message = client.messages.create(
        to="+14155550000", from_=FROM, body="x", status_callback=receiver.url()
    )
    wait_until(lambda: client.messages(message.sid).fetch().status == "sent")
    time.sleep(0.1)
    assert client.messages(message.sid).fetch().status == "sent"
    assert receiver.of(message.sid, only_ok=False) == []


def test_custom_rules(client: Client, sim: Sim, receiver: Receiver) -> None:
    sim.configure(rules=[{"to_suffix": "77", "status": "failed", "error_code": 30007}])
    sim.config.rules.append(OutcomeRule("1177", "sent", None))  # longer suffix wins
    failed = client.messages.create(
        to="+14155552277", from_=FROM, body="x", status_callback=receiver.url()
    )
    sent_only = client.messages.create(
        to="+14155551177", from_=FROM, body="x", status_callback=receiver.url()
    )
    assert [c.params.get("ErrorCode") for c in receiver.wait(failed.sid, 1)] == ["30007"]
    assert [c.params["MessageStatus"] for c in receiver.wait(sent_only.sid, 1)] == ["sent"]
    # The rules were replaced: 3003 is an ordinary number now.
    assert match_rule(sim.config.rules, "+14155553003", "delivered").status == "delivered"


def test_callback_retried_once_then_dropped(client: Client, sim: Sim, receiver: Receiver) -> None:
    receiver.fail_next = 1
    message = client.messages.create(
        to="+14155551234", from_=FROM, body="x", status_callback=receiver.url()
    )
    attempts = receiver.wait(message.sid, 3, only_ok=False)
    assert [(c.params["MessageStatus"], c.answered) for c in attempts] == [
        ("sent", 500),
        ("sent", 200),
        ("delivered", 200),
    ]
    assert (
        attempts[0].headers[IDEMPOTENCY_HEADER.lower()]
        == attempts[1].headers[IDEMPOTENCY_HEADER.lower()]
    )
    assert sim.stats()["callbacks_sent"] == 2 and sim.stats()["callbacks_failed"] == 0

    # Nothing listening: each callback is tried twice, then counted as failed.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    client.messages.create(
        to="+14155551234", from_=FROM, body="x", status_callback=f"http://127.0.0.1:{dead_port}/cb"
    )
    wait_until(lambda: sim.stats()["callbacks_failed"] == 2)
    log = httpx.get(f"{sim.url}/_sim/callbacks").json()
    assert [entry["attempt"] for entry in log if entry["url"].endswith(f"{dead_port}/cb")] == [
        0,
        1,
        0,
        1,
    ]


def test_fragment_overrides_retries_and_is_not_signed(
    client: Client, sim: Sim, receiver: Receiver
) -> None:
    receiver.fail_next = 1
    message = client.messages.create(
        to="+14155551234", from_=FROM, body="x", status_callback=receiver.url() + "#rc=0"
    )
    attempts = receiver.wait(message.sid, 2, only_ok=False)
    assert [c.answered for c in attempts] == [500, 200]  # 'sent' was not retried
    assert all("#" not in c.url for c in attempts)
    assert_signed(attempts[1])
    wait_until(lambda: sim.stats()["callbacks_failed"] == 1)


# -- 429, 503, slow answers --------------------------------------------------------------


def test_rate_limit_429_then_success(client: Client, sim: Sim) -> None:
    sim.configure(rate_limit_429=2)
    form = {"To": "+14155551234", "From": FROM, "Body": "x"}
    limited = sim.post("Messages.json", form)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json() == {
        "code": 20429,
        "message": limited.json()["message"],
        "more_info": "https://www.twilio.com/docs/errors/20429",
        "status": 429,
    }
    with pytest.raises(TwilioRestException) as caught:
        client.calls.create(to="+14155551234", from_=FROM, url="http://x.test/twiml")
    assert (caught.value.status, caught.value.code) == (429, 20429)
    assert sim.post("Messages.json", form).status_code == 201
    stats = sim.stats()
    assert (stats["messages_created"], stats["calls_created"]) == (1, 0)


def test_fail_503_then_success(client: Client, sim: Sim) -> None:
    sim.configure(fail_503=1)
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to="+14155551234", from_=FROM, body="x")
    assert caught.value.status == 503
    assert client.messages.create(to="+14155551234", from_=FROM, body="x").status == "queued"


def test_response_delay_still_creates(sim: Sim, receiver: Receiver) -> None:
    sim.configure(response_delay=0.5)
    form = {"To": "+14155551234", "From": FROM, "Body": "x", "StatusCallback": receiver.url()}
    with pytest.raises(httpx.ReadTimeout):
        sim.post("Messages.json", form, timeout=httpx.Timeout(5.0, read=0.1))
    messages = httpx.get(f"{sim.url}/_sim/messages").json()
    assert len(messages) == 1
    # The client gave up, yet the message lives on and reports back.
    receiver.wait(messages[0]["sid"], 2)


# -- caller ids, calls -------------------------------------------------------------------


def test_caller_ids_three_pages(client: Client, sim: Sim) -> None:
    numbers = [c.phone_number for c in client.outgoing_caller_ids.list()]
    assert numbers == CALLER_IDS
    assert sim.stats()["requests"] == 3  # pages of 2, 2 and 1

    url: str | None = f"/2010-04-01/Accounts/{SID}/OutgoingCallerIds.json"
    pages = []
    while url:
        assert url.startswith("/2010-04-01/")
        page = httpx.get(sim.url + url, auth=(SID, TOKEN)).json()
        assert [key for key in page if isinstance(page[key], list)] == ["outgoing_caller_ids"]
        pages.append(page)
        url = page["next_page_uri"]
    assert [len(p["outgoing_caller_ids"]) for p in pages] == [2, 2, 1]
    assert all(re.fullmatch(r"PN[0-9a-f]{32}", c.sid) for c in client.outgoing_caller_ids.list())
    filtered = client.outgoing_caller_ids.list(phone_number=CALLER_IDS[3])
    assert [c.phone_number for c in filtered] == [CALLER_IDS[3]]


def test_call_with_all_status_events(client: Client, sim: Sim, receiver: Receiver) -> None:
    call = client.calls.create(
        to="+14155551234",
        from_=FROM,
        url="http://x.test/twiml",
        status_callback=receiver.url("call"),
        status_callback_event=["initiated", "ringing", "answered", "completed"],
    )
    assert re.fullmatch(r"CA[0-9a-f]{32}", call.sid) and call.status == "queued"
    callbacks = receiver.wait(call.sid, 4)
    assert [c.params["CallStatus"] for c in callbacks] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert [c.params["SequenceNumber"] for c in callbacks] == ["0", "1", "2", "3"]
    assert [c.params.get("CallDuration") for c in callbacks] == [None, None, None, "4"]
    for callback in callbacks:
        assert_signed(callback)
        assert callback.params["Direction"] == "outbound-api"
        assert (callback.params["AccountSid"], callback.params["To"]) == (SID, "+14155551234")
    fetched = client.calls(call.sid).fetch()
    assert (fetched.status, fetched.duration) == ("completed", "4")


@pytest.mark.parametrize(
    ("to", "status"), [("+14155554000", "no-answer"), ("+14155554001", "busy")]
)
def test_call_outcome_rules_default_event(
    client: Client, sim: Sim, receiver: Receiver, to: str, status: str
) -> None:
    call = client.calls.create(
        to=to, from_=FROM, twiml="<Response/>", status_callback=receiver.url("call")
    )
    [callback] = receiver.wait(call.sid, 1)  # only 'completed' was asked for (the default)
    assert (callback.params["CallStatus"], callback.params["SequenceNumber"]) == (status, "0")
    assert callback.params["CallDuration"] == "0"
    assert_signed(callback)
    assert client.calls(call.sid).fetch().status == status


@pytest.mark.parametrize(
    ("from_", "to", "form_extra", "code"),
    [
        ("+15005550001", "+14155551234", {}, 21212),
        (FROM, "+15005550001", {}, 21217),
        (FROM, "+15005550002", {}, 21214),
        (FROM, "+15005550003", {}, 21215),
        (FROM, "+15005550004", {}, 21216),
        (FROM, "+14155551234", {"Url": None}, 21205),
    ],
)
def test_call_errors(
    sim: Sim, from_: str, to: str, form_extra: dict[str, str | None], code: int
) -> None:
    form = {"To": to, "From": from_, "Url": "http://x.test/twiml", **form_extra}
    response = sim.post("Calls.json", {k: v for k, v in form.items() if v is not None})
    assert (response.status_code, response.json()["code"]) == (400, code)
    assert response.json()["more_info"] == f"https://www.twilio.com/docs/errors/{code}"


# -- helpers: stats, config, reset, serve_simulator --------------------------------------


def test_stats_count_everything(client: Client, sim: Sim, receiver: Receiver) -> None:
    message = client.messages.create(
        to="+14155551234", from_=FROM, body="x", status_callback=receiver.url()
    )
    client.calls.create(to="+14155551234", from_=FROM, url="http://x.test/t")
    client.messages(message.sid).fetch()
    with pytest.raises(TwilioRestException):
        client.messages.create(to="+15005550001", from_=FROM, body="x")
    receiver.wait(message.sid, 2)
    wait_until(lambda: sim.stats()["callbacks_sent"] == 2)
    assert sim.stats() == {
        "messages_created": 1,
        "calls_created": 1,
        "callbacks_sent": 2,
        "callbacks_failed": 0,
        "incoming_sent": 0,
        "incoming_failed": 0,
        "requests": 4,
    }
    assert len(httpx.get(f"{sim.url}/_sim/calls").json()) == 1


def test_config_endpoint_validates_and_reset_restores(sim: Sim) -> None:
    current = sim.configure(rate_limit_429=3, callback_delay=1)
    assert (current["rate_limit_429"], current["callback_delay"]) == (3, 1.0)
    for bad in ({"nope": 1}, {"rate_limit_429": "2"}, {"lose_callbacks": 1}, {"rules": [1]}):
        response = httpx.post(f"{sim.url}/_sim/config", json=bad)
        assert response.status_code == 400, bad
    assert httpx.post(f"{sim.url}/_sim/config", content=b"{").status_code == 400
    assert sim.config.rate_limit_429 == 3  # the live object the app uses
    httpx.post(f"{sim.url}/_sim/reset")
    restored = httpx.get(f"{sim.url}/_sim/config").json()
    assert (restored["rate_limit_429"], restored["callback_delay"]) == (0, 0.01)
    assert restored["rules"][0] == {
        "to_suffix": "3003",
        "status": "undelivered",
        "error_code": 30003,
    }


def test_serve_simulator_runs_until_cancelled() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> None:
        task = asyncio.create_task(serve_simulator(SimulatorConfig(), port=port))
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + WAIT
            while True:
                try:
                    response = await http.get(f"http://127.0.0.1:{port}/_sim/stats")
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline, "simulator did not start"
                    await asyncio.sleep(0.01)
            assert response.json()["requests"] == 0
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, WAIT)
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/_sim/stats")

    asyncio.run(scenario())
