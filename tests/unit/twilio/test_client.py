from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import parse_qs

import httpx
import pytest

from orchestrator.twilio.client import TwilioClient
from orchestrator.twilio.credentials import Credentials
from orchestrator.twilio.errors import TwilioError
from orchestrator.twilio.retry import RetryPolicy

T = TypeVar("T")
Handler = Callable[[httpx.Request], httpx.Response]

SID = "AC" + "a" * 32
TOKEN = "s3cr3t-auth-token-value"
CREDS = Credentials(account_sid=SID, username=SID, password=TOKEN)
MESSAGES = f"/2010-04-01/Accounts/{SID}/Messages.json"
MESSAGE_SID = "SM" + "b" * 32


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Recorder:
    """A MockTransport handler that records requests and plays scripted answers."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            if isinstance(answer, httpx.RequestError):
                answer.request = request
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)


def make_client(
    handler: Recorder, *, retry: RetryPolicy | None = None, base_url: str = "https://api.test"
) -> tuple[TwilioClient, list[float]]:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = TwilioClient(
        base_url,
        transport=httpx.MockTransport(handler),
        retry=retry or RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=1.0, jitter=0.0),
        sleep=fake_sleep,
    )
    return client, sleeps


async def call(client: TwilioClient, op: Callable[[TwilioClient], Awaitable[T]]) -> T:
    async with client:
        return await op(client)


def created(**extra: Any) -> httpx.Response:
    return httpx.Response(201, json={"sid": MESSAGE_SID, "status": "queued", **extra})


def twilio_error(status: int, code: int | None, message: str, **headers: str) -> httpx.Response:
    body: dict[str, Any] = {"status": status, "message": message}
    if code is not None:
        body["code"] = code
        body["more_info"] = f"https://www.twilio.com/docs/errors/{code}"
    return httpx.Response(status, json=body, headers=headers)


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def send_sms(client: TwilioClient) -> Awaitable[dict[str, Any]]:
    return client.create_message(
        CREDS, {"To": "+15005550009", "From": "+15005550006", "Body": "hi"}
    )


# -- requests ---------------------------------------------------------------------------


def test_create_message_form_body_auth_and_repeated_media_url() -> None:
    rec = Recorder(created())
    client, sleeps = make_client(rec)
    params = {
        "To": "+15005550009",
        "From": "+15005550006",
        "Body": "Hello & welcome, ünïcode",
        "MediaUrl": ["https://x.test/a.png", "https://x.test/b.png"],
        "StatusCallback": "https://cb.test/api/1/json/plugins/twilio/1/abc?x=1",
    }
    result = run(call(client, lambda c: c.create_message(CREDS, params)))
    assert result == {"sid": MESSAGE_SID, "status": "queued"}
    (req,) = rec.requests
    assert req.method == "POST"
    assert str(req.url) == f"https://api.test{MESSAGES}"
    assert req.headers["Authorization"] == basic(SID, TOKEN)
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert req.headers["Accept"] == "application/json"
    assert req.content == (
        b"To=%2B15005550009&From=%2B15005550006"
        b"&Body=Hello+%26+welcome%2C+%C3%BCn%C3%AFcode"
        b"&MediaUrl=https%3A%2F%2Fx.test%2Fa.png&MediaUrl=https%3A%2F%2Fx.test%2Fb.png"
        b"&StatusCallback=https%3A%2F%2Fcb.test%2Fapi%2F1%2Fjson%2Fplugins%2Ftwilio%2F1%2Fabc%3Fx%3D1"
    )
    assert parse_qs(req.content.decode())["MediaUrl"] == [
        "https://x.test/a.png",
        "https://x.test/b.png",
    ]
    assert sleeps == []


def test_api_key_credentials_keep_account_sid_in_path() -> None:
    rec = Recorder(created())
    client, _ = make_client(rec)
    creds = Credentials(account_sid=SID, username="SK" + "c" * 32, password="key-secret")
    run(call(client, lambda c: c.create_message(creds, {"To": "+1", "Body": "x"})))
    (req,) = rec.requests
    assert req.url.path == MESSAGES
    assert req.headers["Authorization"] == basic("SK" + "c" * 32, "key-secret")


def test_create_call_repeated_status_callback_event() -> None:
    rec = Recorder(httpx.Response(201, json={"sid": "CA" + "d" * 32, "status": "queued"}))
    client, _ = make_client(rec)
    params = {
        "To": "+15005550009",
        "From": "+15005550006",
        "Url": "https://app.test/twiml",
        "StatusCallbackEvent": ("initiated", "answered", "completed"),
    }
    result = run(call(client, lambda c: c.create_call(CREDS, params)))
    assert result["sid"].startswith("CA")
    (req,) = rec.requests
    assert req.url.path == f"/2010-04-01/Accounts/{SID}/Calls.json"
    assert req.content == (
        b"To=%2B15005550009&From=%2B15005550006&Url=https%3A%2F%2Fapp.test%2Ftwiml"
        b"&StatusCallbackEvent=initiated&StatusCallbackEvent=answered"
        b"&StatusCallbackEvent=completed"
    )


def test_fetch_message_and_base_url_with_prefix() -> None:
    rec = Recorder(httpx.Response(200, json={"sid": MESSAGE_SID, "status": "delivered"}))
    client, _ = make_client(rec, base_url="http://127.0.0.1:8010/sim/")
    result = run(call(client, lambda c: c.fetch_message(CREDS, MESSAGE_SID)))
    assert result["status"] == "delivered"
    (req,) = rec.requests
    assert req.method == "GET"
    assert str(req.url) == (
        f"http://127.0.0.1:8010/sim/2010-04-01/Accounts/{SID}/Messages/{MESSAGE_SID}.json"
    )
    assert req.content == b""


def test_fetch_message_quotes_the_sid() -> None:
    rec = Recorder(httpx.Response(200, json={}))
    client, _ = make_client(rec)
    run(call(client, lambda c: c.fetch_message(CREDS, "../Calls")))
    assert rec.requests[0].url.raw_path.decode().endswith("/Messages/..%2FCalls.json")


def test_list_messages_query_and_paging() -> None:
    page2 = f"{MESSAGES}?To=%2B15005550009&PageSize=2&Page=1&PageToken=PAx"
    rec = Recorder(
        httpx.Response(
            200, json={"messages": [{"sid": "SM1"}, {"sid": "SM2"}], "next_page_uri": page2}
        ),
        httpx.Response(200, json={"messages": [{"sid": "SM3"}], "next_page_uri": None}),
    )
    client, _ = make_client(rec)
    result = run(
        call(
            client,
            lambda c: c.list_messages(
                CREDS,
                to="+15005550009",
                from_="+15005550006",
                date_sent="2024-05-01",
                page_size=2,
            ),
        )
    )
    assert [m["sid"] for m in result] == ["SM1", "SM2", "SM3"]
    first, second = rec.requests
    assert first.url.path == MESSAGES
    assert parse_qs(first.url.query.decode()) == {
        "To": ["+15005550009"],
        "From": ["+15005550006"],
        "DateSent": ["2024-05-01"],
        "PageSize": ["2"],
    }
    assert second.url.raw_path.decode() == page2


def test_list_outgoing_caller_ids_follows_next_page_uri() -> None:
    base = f"/2010-04-01/Accounts/{SID}/OutgoingCallerIds.json"

    def page(request: httpx.Request) -> httpx.Response:
        query = parse_qs(request.url.query.decode())
        number = int(query.get("Page", ["0"])[0])
        ids = [
            {"sid": f"PN{number}{i}", "phone_number": f"+1500555{number}{i:03d}"} for i in range(2)
        ]
        nxt = f"{base}?PageSize=2&Page={number + 1}&PageToken=PA{number}" if number < 2 else None
        return httpx.Response(
            200,
            json={
                "outgoing_caller_ids": ids,
                "next_page_uri": nxt,
                "page": number,
                "page_size": 2,
                "uri": str(request.url.raw_path.decode()),
            },
        )

    rec = Recorder(page)
    client, _ = make_client(rec)
    result = run(call(client, lambda c: c.list_outgoing_caller_ids(CREDS, page_size=2)))
    assert [r["sid"] for r in result] == ["PN00", "PN01", "PN10", "PN11", "PN20", "PN21"]
    assert len(rec.requests) == 3
    assert [r.url.raw_path.decode() for r in rec.requests] == [
        f"{base}?PageSize=2",
        f"{base}?PageSize=2&Page=1&PageToken=PA0",
        f"{base}?PageSize=2&Page=2&PageToken=PA1",
    ]
    assert all(r.headers["Authorization"] == basic(SID, TOKEN) for r in rec.requests)


def test_list_stops_at_max_pages() -> None:
    base = f"/2010-04-01/Accounts/{SID}/OutgoingCallerIds.json"
    rec = Recorder(
        httpx.Response(
            200, json={"outgoing_caller_ids": [{"sid": "PN"}], "next_page_uri": f"{base}?Page=1"}
        )
    )
    client, _ = make_client(rec)
    result = run(call(client, lambda c: c.list_outgoing_caller_ids(CREDS, max_pages=3)))
    assert len(result) == 3
    assert len(rec.requests) == 3


@pytest.mark.parametrize(
    "next_uri", ["https://evil.test/2010-04-01/x.json", "//evil.test/x.json", "x.json"]
)
def test_list_refuses_next_page_on_another_host(next_uri: str) -> None:
    rec = Recorder(httpx.Response(200, json={"outgoing_caller_ids": [], "next_page_uri": next_uri}))
    client, _ = make_client(rec)
    with pytest.raises(TwilioError) as info:
        run(call(client, lambda c: c.list_outgoing_caller_ids(CREDS)))
    assert info.value.error == "UNKNOWN_ERROR"
    assert len(rec.requests) == 1


def test_list_rejects_bad_page_size() -> None:
    client, _ = make_client(Recorder(httpx.Response(200, json={})))
    with pytest.raises(ValueError):
        run(call(client, lambda c: c.list_outgoing_caller_ids(CREDS, page_size=0)))


def test_cookies_are_not_carried_between_requests() -> None:
    rec = Recorder(
        httpx.Response(201, json={"sid": "SM1"}, headers={"Set-Cookie": "tenant=a; Path=/"}),
    )
    client, _ = make_client(rec)

    async def twice(c: TwilioClient) -> None:
        await send_sms(c)
        await send_sms(c)

    run(call(client, twice))
    assert "cookie" not in rec.requests[1].headers


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "message", "name"),
    [
        (
            400,
            21211,
            "The 'To' number +15005550001 is not a valid phone number.",
            "INVALID_TO_PHONE_NUMBER_ERROR",
        ),
        (
            400,
            21212,
            "The 'From' number +15005550001 is not a valid phone number, shortcode, "
            "or alphanumeric sender ID.",
            "INVALID_FROM_PHONE_NUMBER_ERROR",
        ),
        (
            400,
            21408,
            "Permission to send an SMS has not been enabled for the region "
            "indicated by the 'To' number: +15005550003.",
            "INVALID_REGION_TO_PHONE_NUMBER_ERROR",
        ),
        (401, 20003, "Authenticate", "AUTHENTICATION_CONNECTION_ERROR"),
        (400, 21610, "Attempt to send to unsubscribed recipient", "INVALID_REQUEST_ERROR"),
        (
            429,
            21611,
            "This 'From' number has exceeded the maximum number of queued messages",
            "TOO_MANY_REQUESTS",
        ),
    ],
)
def test_twilio_error_mapping(status: int, code: int, message: str, name: str) -> None:
    rec = Recorder(twilio_error(status, code, message))
    client, sleeps = make_client(rec)
    with pytest.raises(TwilioError) as info:
        run(call(client, send_sms))
    err = info.value
    assert (err.error, err.code, err.message, err.http_status) == (name, code, message, status)
    assert err.url_more_info == f"https://www.twilio.com/docs/errors/{code}"
    assert err.retryable is False and err.outcome_unknown is False
    assert err.as_task_data() == {
        "error": name,
        "code": code,
        "message": message,
        "url_more_info": f"https://www.twilio.com/docs/errors/{code}",
        "statusCode": str(status),
    }
    assert len(rec.requests) == 1
    assert sleeps == []


def test_429_then_201_honours_retry_after() -> None:
    rec = Recorder(
        twilio_error(429, 20429, "Too Many Requests", **{"Retry-After": "2"}),
        created(),
    )
    client, sleeps = make_client(rec)
    assert run(call(client, send_sms))["sid"] == MESSAGE_SID
    assert len(rec.requests) == 2
    assert sleeps == [1.0]  # Retry-After 2 s, capped by max_delay=1.0
    assert rec.requests[0].content == rec.requests[1].content


def test_429_retry_after_below_cap_is_used_as_is() -> None:
    rec = Recorder(twilio_error(429, 20429, "Too Many Requests", **{"Retry-After": "2"}), created())
    client, sleeps = make_client(
        rec, retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=10.0, jitter=0.0)
    )
    run(call(client, send_sms))
    assert sleeps == [2.0]


def test_429_exhausted_raises_twilio_error_as_parsed() -> None:
    rec = Recorder(twilio_error(429, 20429, "Too Many Requests"))
    client, sleeps = make_client(rec)
    with pytest.raises(TwilioError) as info:
        run(call(client, send_sms))
    err = info.value
    assert (err.error, err.code, err.http_status) == ("TOO_MANY_REQUESTS", 20429, 429)
    assert err.retryable is True
    assert len(rec.requests) == 4
    assert sleeps == [0.01, 0.02, 0.04]


def test_503_five_times_exhausted() -> None:
    rec = Recorder(httpx.Response(503, text="<html>down</html>"))
    client, sleeps = make_client(
        rec, retry=RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=10.0, jitter=0.0)
    )
    with pytest.raises(TwilioError) as info:
        run(call(client, send_sms))
    err = info.value
    assert (err.error, err.code, err.http_status) == (
        "SERVICE_UNAVAILABLE",
        "SERVICE_UNAVAILABLE",
        503,
    )
    assert err.message == "HTTP 503 Service Unavailable"
    assert err.retryable is True and err.outcome_unknown is False
    assert len(rec.requests) == 5
    assert sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8])


def test_connect_error_exhausted(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder(httpx.ConnectError("[Errno 111] Connection refused"))
    client, sleeps = make_client(rec)
    with caplog.at_level(logging.DEBUG, logger="orchestrator.twilio"):
        with pytest.raises(TwilioError) as info:
            run(call(client, send_sms))
    err = info.value
    assert (err.error, err.code) == ("TWILIO_CONNECTION_ERROR", "TWILIO_CONNECTION_ERROR")
    assert err.retryable is True and err.outcome_unknown is False
    assert "Connection refused" in err.message and "4 attempt" in err.message
    assert len(rec.requests) == 4
    assert len(sleeps) == 3
    for text in (err.message, str(err), repr(err), caplog.text):
        assert TOKEN not in text
        assert base64.b64encode(f"{SID}:{TOKEN}".encode()).decode() not in text
    assert "retry" in caplog.text


def test_connect_timeout_then_success() -> None:
    rec = Recorder(httpx.ConnectTimeout("timed out"), httpx.PoolTimeout("pool"), created())
    client, sleeps = make_client(rec)
    assert run(call(client, send_sms))["status"] == "queued"
    assert len(rec.requests) == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
    ],
)
def test_create_without_answer_is_outcome_unknown_and_not_retried(failure: Exception) -> None:
    rec = Recorder(failure, created())
    client, sleeps = make_client(rec)
    with pytest.raises(TwilioError) as info:
        run(call(client, send_sms))
    err = info.value
    assert (err.error, err.code) == ("TWILIO_OUTCOME_UNKNOWN", "TWILIO_OUTCOME_UNKNOWN")
    assert err.outcome_unknown is True and err.retryable is False
    assert len(rec.requests) == 1
    assert sleeps == []
    assert TOKEN not in str(err)


def test_fetch_read_timeout_is_retried() -> None:
    rec = Recorder(httpx.ReadTimeout("timed out"), httpx.Response(200, json={"sid": MESSAGE_SID}))
    client, sleeps = make_client(rec)
    assert run(call(client, lambda c: c.fetch_message(CREDS, MESSAGE_SID)))["sid"] == MESSAGE_SID
    assert len(rec.requests) == 2
    assert len(sleeps) == 1


def test_fetch_read_timeout_exhausted_is_connection_error() -> None:
    rec = Recorder(httpx.ReadTimeout("timed out"))
    client, _ = make_client(rec)
    with pytest.raises(TwilioError) as info:
        run(call(client, lambda c: c.fetch_message(CREDS, MESSAGE_SID)))
    assert info.value.error == "TWILIO_CONNECTION_ERROR"
    assert info.value.outcome_unknown is False
    assert len(rec.requests) == 4


def test_create_500_is_not_retried_and_flags_unknown_outcome() -> None:
    rec = Recorder(twilio_error(500, 20500, "Internal Server Error"), created())
    client, sleeps = make_client(rec)
    with pytest.raises(TwilioError) as info:
        run(call(client, send_sms))
    err = info.value
    assert (err.error, err.code) == ("INTERNAL_SERVER_ERROR", 20500)
    assert err.outcome_unknown is True and err.retryable is False
    assert len(rec.requests) == 1
    assert sleeps == []


def test_fetch_500_is_retried() -> None:
    rec = Recorder(httpx.Response(500), httpx.Response(200, json={"sid": MESSAGE_SID}))
    client, _ = make_client(rec)
    run(call(client, lambda c: c.fetch_message(CREDS, MESSAGE_SID)))
    assert len(rec.requests) == 2


def test_not_found_without_code_uses_http_name() -> None:
    rec = Recorder(
        httpx.Response(404, json={"status": 404, "message": "The requested resource was not found"})
    )
    client, _ = make_client(rec)
    with pytest.raises(TwilioError) as info:
        run(call(client, lambda c: c.fetch_message(CREDS, MESSAGE_SID)))
    err = info.value
    assert (err.error, err.code, err.url_more_info) == ("NOT_FOUND", "NOT_FOUND", None)
    assert err.as_task_data() == {
        "error": "NOT_FOUND",
        "code": "NOT_FOUND",
        "message": "The requested resource was not found",
        "statusCode": "404",
    }


def test_non_json_error_body() -> None:
    rec = Recorder(httpx.Response(502, text="<html>Bad Gateway</html>"))
    client, _ = make_client(rec)
    with pytest.raises(TwilioError) as info:
        run(call(client, send_sms))
    assert (info.value.error, info.value.message) == ("BAD_GATEWAY", "HTTP 502 Bad Gateway")
    assert info.value.outcome_unknown is True


def test_string_code_in_error_body() -> None:
    rec = Recorder(httpx.Response(400, json={"code": "21211", "message": "bad to"}))
    client, _ = make_client(rec)
    with pytest.raises(TwilioError) as info:
        run(call(client, send_sms))
    assert (info.value.error, info.value.code) == ("INVALID_TO_PHONE_NUMBER_ERROR", 21211)


def test_unreadable_2xx_on_create_is_outcome_unknown() -> None:
    rec = Recorder(httpx.Response(201, text="not json"))
    client, _ = make_client(rec)
    with pytest.raises(TwilioError) as info:
        run(call(client, send_sms))
    assert info.value.error == "TWILIO_OUTCOME_UNKNOWN"
    assert info.value.outcome_unknown is True


# -- credentials and construction -------------------------------------------------------


def test_credentials_repr_hides_secret() -> None:
    creds = Credentials(account_sid=SID, username="SK" + "c" * 32, password=TOKEN)
    for text in (repr(creds), str(creds), f"{creds}", repr([creds]), repr({"c": creds})):
        assert TOKEN not in text
        assert "***" in text
    assert SID in repr(creds)
    assert Credentials.from_auth_token(SID, TOKEN) == CREDS


def test_credentials_reject_empty_values() -> None:
    with pytest.raises(ValueError) as info:
        Credentials(account_sid=SID, username=SID, password="")
    assert "password" in str(info.value)


def test_invalid_base_url() -> None:
    with pytest.raises(ValueError):
        TwilioClient("api.twilio.com")


def test_default_client_can_be_built_and_closed() -> None:
    async def build() -> None:
        client = TwilioClient(max_connections=5)
        await client.aclose()

    run(build())
