"""The Twilio client against a real HTTP server on loopback (``fake_http``): what goes
on the wire, and how answers and errors are mapped. How each kind of network failure is
told apart (sent or not) is in test_client_failures.py."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs

import pytest
from fake_http import Answer, FakeServer, Reply, Seen

from orchestrator.twilio.client import TwilioClient
from orchestrator.twilio.credentials import Credentials
from orchestrator.twilio.errors import TwilioError
from orchestrator.twilio.retry import RetryPolicy

T = TypeVar("T")

SID = "AC" + "a" * 32
TOKEN = "s3cr3t-auth-token-value"
CREDS = Credentials(account_sid=SID, username=SID, password=TOKEN)
MESSAGES = f"/2010-04-01/Accounts/{SID}/Messages.json"
MESSAGE_SID = "SM" + "b" * 32


class Recorder(FakeServer):
    """The server, plus the client's waits between attempts (its injected ``sleep``)."""

    def __init__(self, *answers: Answer) -> None:
        super().__init__(*answers)
        self.sleeps: list[float] = []

    async def fake_sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def make_client(rec: Recorder, retry: RetryPolicy | None, path: str) -> TwilioClient:
    return TwilioClient(
        rec.url + path,
        retry=retry or RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=1.0, jitter=0.0),
        sleep=rec.fake_sleep,
        timeout=2.0,
    )


def call(
    rec: Recorder,
    op: Callable[[TwilioClient], Awaitable[T]],
    *,
    retry: RetryPolicy | None = None,
    path: str = "",
) -> T:
    """Runs ``op`` with a client of ``rec`` (its base URL + ``path``)."""

    async def main() -> T:
        async with rec, make_client(rec, retry, path) as client:
            return await op(client)

    return asyncio.run(main())


def created(**extra: Any) -> Reply:
    return Reply.json(201, {"sid": MESSAGE_SID, "status": "queued", **extra})


def twilio_error(status: int, code: int | None, message: str, **headers: str) -> Reply:
    body: dict[str, Any] = {"status": status, "message": message}
    if code is not None:
        body["code"] = code
        body["more_info"] = f"https://www.twilio.com/docs/errors/{code}"
    return Reply.json(status, body, **headers)


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def send_sms(client: TwilioClient) -> Awaitable[dict[str, Any]]:
    return client.create_message(
        CREDS, {"To": "+15005550009", "From": "+15005550006", "Body": "hi"}
    )


# -- requests ---------------------------------------------------------------------------


def test_create_message_form_body_auth_and_repeated_media_url() -> None:
    rec = Recorder(created())
    params = {
        "To": "+15005550009",
        "From": "+15005550006",
        "Body": "Hello & welcome, ünïcode",
        "MediaUrl": ["https://x.test/a.png", "https://x.test/b.png"],
        "StatusCallback": "https://cb.test/api/1/json/plugins/twilio/1/abc?x=1",
    }
    result = call(rec, lambda c: c.create_message(CREDS, params))
    assert result == {"sid": MESSAGE_SID, "status": "queued"}
    (req,) = rec.requests
    assert req.method == "POST"
    assert req.target == MESSAGES
    assert req.headers["Authorization"] == basic(SID, TOKEN)
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert req.headers["Accept"] == "application/json"
    assert req.headers["User-Agent"] == "orchestrator-twilio/0.1"
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
    assert rec.sleeps == []


def test_api_key_credentials_keep_account_sid_in_path() -> None:
    rec = Recorder(created())
    creds = Credentials(account_sid=SID, username="SK" + "c" * 32, password="key-secret")
    call(rec, lambda c: c.create_message(creds, {"To": "+1", "Body": "x"}))
    (req,) = rec.requests
    assert req.url.path == MESSAGES
    assert req.headers["Authorization"] == basic("SK" + "c" * 32, "key-secret")


def test_create_call_repeated_status_callback_event() -> None:
    rec = Recorder(Reply.json(201, {"sid": "CA" + "d" * 32, "status": "queued"}))
    params = {
        "To": "+15005550009",
        "From": "+15005550006",
        "Url": "https://app.test/twiml",
        "StatusCallbackEvent": ("initiated", "answered", "completed"),
    }
    result = call(rec, lambda c: c.create_call(CREDS, params))
    assert result["sid"].startswith("CA")
    (req,) = rec.requests
    assert req.url.path == f"/2010-04-01/Accounts/{SID}/Calls.json"
    assert req.content == (
        b"To=%2B15005550009&From=%2B15005550006&Url=https%3A%2F%2Fapp.test%2Ftwiml"
        b"&StatusCallbackEvent=initiated&StatusCallbackEvent=answered"
        b"&StatusCallbackEvent=completed"
    )


def test_fetch_message_and_base_url_with_prefix() -> None:
    rec = Recorder(Reply.json(200, {"sid": MESSAGE_SID, "status": "delivered"}))
    result = call(rec, lambda c: c.fetch_message(CREDS, MESSAGE_SID), path="/sim/")
    assert result["status"] == "delivered"
    (req,) = rec.requests
    assert req.method == "GET"
    assert req.target == f"/sim/2010-04-01/Accounts/{SID}/Messages/{MESSAGE_SID}.json"
    assert req.content == b""


def test_credentials_base_url_overrides_the_clients() -> None:
    rec = Recorder(created())

    async def main() -> dict[str, Any]:
        async with rec, TwilioClient("http://127.0.0.1:9/never") as client:
            creds = Credentials(SID, SID, TOKEN, base_url=rec.url + "/other")
            return await client.create_message(creds, {"To": "+1", "Body": "x"})

    assert asyncio.run(main())["sid"] == MESSAGE_SID
    assert rec.requests[0].target == f"/other{MESSAGES}"


def test_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(created())

    async def main() -> dict[str, Any]:
        async with rec, TwilioClient("http://api.twilio.test") as client:
            monkeypatch.setenv("HTTP_PROXY", rec.url)
            return await send_sms(client)

    assert asyncio.run(main())["sid"] == MESSAGE_SID
    assert rec.requests[0].target == f"http://api.twilio.test{MESSAGES}"  # absolute form
    assert rec.requests[0].headers["Authorization"] == basic(SID, TOKEN)


def test_fetch_message_quotes_the_sid() -> None:
    rec = Recorder(Reply.json(200, {}))
    call(rec, lambda c: c.fetch_message(CREDS, "../Calls"))
    assert rec.requests[0].target.endswith("/Messages/..%2FCalls.json")


def test_list_messages_query_and_paging() -> None:
    page2 = f"{MESSAGES}?To=%2B15005550009&PageSize=2&Page=1&PageToken=PAx"
    rec = Recorder(
        Reply.json(200, {"messages": [{"sid": "SM1"}, {"sid": "SM2"}], "next_page_uri": page2}),
        Reply.json(200, {"messages": [{"sid": "SM3"}], "next_page_uri": None}),
    )
    result = call(
        rec,
        lambda c: c.list_messages(
            CREDS,
            to="+15005550009",
            from_="+15005550006",
            date_sent="2024-05-01",
            date_sent_after="2024-04-30T00:00:00Z",
            page_size=2,
        ),
    )
    assert [m["sid"] for m in result] == ["SM1", "SM2", "SM3"]
    first, second = rec.requests
    assert first.url.path == MESSAGES
    assert parse_qs(first.url.raw_query_string) == {
        "To": ["+15005550009"],
        "From": ["+15005550006"],
        "DateSent": ["2024-05-01"],
        "DateSent>": ["2024-04-30T00:00:00Z"],
        "PageSize": ["2"],
    }
    # Sent exactly as written: %2B stays %2B (a re-quoted "+" would read as a space).
    assert "To=%2B15005550009" in first.target
    assert second.target == page2


def test_list_outgoing_caller_ids_follows_next_page_uri() -> None:
    base = f"/2010-04-01/Accounts/{SID}/OutgoingCallerIds.json"

    def page(request: Seen) -> Reply:
        query = parse_qs(request.url.raw_query_string)
        number = int(query.get("Page", ["0"])[0])
        ids = [
            {"sid": f"PN{number}{i}", "phone_number": f"+1500555{number}{i:03d}"} for i in range(2)
        ]
        nxt = f"{base}?PageSize=2&Page={number + 1}&PageToken=PA{number}" if number < 2 else None
        return Reply.json(
            200,
            {
                "outgoing_caller_ids": ids,
                "next_page_uri": nxt,
                "page": number,
                "page_size": 2,
                "uri": request.target,
            },
        )

    rec = Recorder(page)
    result = call(rec, lambda c: c.list_outgoing_caller_ids(CREDS, page_size=2))
    assert [r["sid"] for r in result] == ["PN00", "PN01", "PN10", "PN11", "PN20", "PN21"]
    assert len(rec.requests) == 3
    assert [r.target for r in rec.requests] == [
        f"{base}?PageSize=2",
        f"{base}?PageSize=2&Page=1&PageToken=PA0",
        f"{base}?PageSize=2&Page=2&PageToken=PA1",
    ]
    assert all(r.headers["Authorization"] == basic(SID, TOKEN) for r in rec.requests)


def test_list_stops_at_max_pages() -> None:
    base = f"/2010-04-01/Accounts/{SID}/OutgoingCallerIds.json"
    rec = Recorder(
        Reply.json(200, {"outgoing_caller_ids": [{"sid": "PN"}], "next_page_uri": f"{base}?Page=1"})
    )
    result = call(rec, lambda c: c.list_outgoing_caller_ids(CREDS, max_pages=3))
    assert len(result) == 3
    assert len(rec.requests) == 3


@pytest.mark.parametrize(
    "next_uri", ["https://evil.test/2010-04-01/x.json", "//evil.test/x.json", "x.json"]
)
def test_list_refuses_next_page_on_another_host(next_uri: str) -> None:
    rec = Recorder(Reply.json(200, {"outgoing_caller_ids": [], "next_page_uri": next_uri}))
    with pytest.raises(TwilioError) as info:
        call(rec, lambda c: c.list_outgoing_caller_ids(CREDS))
    assert info.value.error == "UNKNOWN_ERROR"
    assert len(rec.requests) == 1


def test_list_rejects_bad_page_size() -> None:
    rec = Recorder(Reply.json(200, {}))
    with pytest.raises(ValueError):
        call(rec, lambda c: c.list_outgoing_caller_ids(CREDS, page_size=0))
    assert rec.requests == []


def test_cookies_are_not_carried_between_requests() -> None:
    rec = Recorder(Reply.json(201, {"sid": "SM1"}, **{"Set-Cookie": "tenant=a; Path=/"}))

    async def twice(c: TwilioClient) -> None:
        await send_sms(c)
        await send_sms(c)

    call(rec, twice)
    assert "cookie" not in rec.requests[1].headers


def test_redirects_are_not_followed() -> None:
    rec = Recorder(Reply(307, headers={"Location": "/elsewhere"}), created())
    with pytest.raises(TwilioError) as info:
        call(rec, send_sms)
    assert info.value.http_status == 307
    assert [r.target for r in rec.requests] == [MESSAGES]


def test_gzip_answer_is_decoded() -> None:
    body = gzip.compress(json.dumps({"sid": MESSAGE_SID}).encode())
    rec = Recorder(
        Reply(201, body, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    )
    assert call(rec, send_sms) == {"sid": MESSAGE_SID}
    assert "gzip" in rec.requests[0].headers["Accept-Encoding"]


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
    with pytest.raises(TwilioError) as info:
        call(rec, send_sms)
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
    assert rec.sleeps == []


def test_429_then_201_honours_retry_after() -> None:
    rec = Recorder(
        twilio_error(429, 20429, "Too Many Requests", **{"Retry-After": "2"}),
        created(),
    )
    assert call(rec, send_sms)["sid"] == MESSAGE_SID
    assert len(rec.requests) == 2
    assert rec.sleeps == [1.0]  # Retry-After 2 s, capped by max_delay=1.0
    assert rec.requests[0].content == rec.requests[1].content
    assert rec.requests[0].headers["Authorization"] == rec.requests[1].headers["Authorization"]


def test_429_retry_after_below_cap_is_used_as_is() -> None:
    rec = Recorder(twilio_error(429, 20429, "Too Many Requests", **{"Retry-After": "2"}), created())
    retry = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=10.0, jitter=0.0)
    call(rec, send_sms, retry=retry)
    assert rec.sleeps == [2.0]


@pytest.mark.parametrize("header", ["Wed, 21 Oct 2026 07:28:00 GMT", "-1", "nan", "soon"])
def test_429_retry_after_not_in_seconds_falls_back_to_backoff(header: str) -> None:
    rec = Recorder(twilio_error(429, 20429, "Too Many", **{"Retry-After": header}), created())
    call(rec, send_sms)
    assert rec.sleeps == [0.01]


def test_429_exhausted_raises_twilio_error_as_parsed() -> None:
    rec = Recorder(twilio_error(429, 20429, "Too Many Requests"))
    with pytest.raises(TwilioError) as info:
        call(rec, send_sms)
    err = info.value
    assert (err.error, err.code, err.http_status) == ("TOO_MANY_REQUESTS", 20429, 429)
    assert err.retryable is True
    assert len(rec.requests) == 4
    assert rec.sleeps == [0.01, 0.02, 0.04]


def test_503_five_times_exhausted() -> None:
    rec = Recorder(Reply.text(503, "<html>down</html>"))
    retry = RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=10.0, jitter=0.0)
    with pytest.raises(TwilioError) as info:
        call(rec, send_sms, retry=retry)
    err = info.value
    assert (err.error, err.code, err.http_status) == (
        "SERVICE_UNAVAILABLE",
        "SERVICE_UNAVAILABLE",
        503,
    )
    assert err.message == "HTTP 503 Service Unavailable"
    assert err.retryable is True and err.outcome_unknown is False
    assert len(rec.requests) == 5
    assert rec.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8])


def test_server_reason_phrase_is_kept() -> None:
    rec = Recorder(Reply(503, reason="Down For Maintenance"))
    with pytest.raises(TwilioError) as info:
        call(rec, send_sms, retry=RetryPolicy(max_attempts=1))
    assert info.value.message == "HTTP 503 Down For Maintenance"


def test_create_500_is_not_retried_and_flags_unknown_outcome() -> None:
    rec = Recorder(twilio_error(500, 20500, "Internal Server Error"), created())
    with pytest.raises(TwilioError) as info:
        call(rec, send_sms)
    err = info.value
    assert (err.error, err.code) == ("INTERNAL_SERVER_ERROR", 20500)
    assert err.outcome_unknown is True and err.retryable is False
    assert len(rec.requests) == 1
    assert rec.sleeps == []


def test_fetch_500_is_retried() -> None:
    rec = Recorder(Reply(500), Reply.json(200, {"sid": MESSAGE_SID}))
    call(rec, lambda c: c.fetch_message(CREDS, MESSAGE_SID))
    assert len(rec.requests) == 2


def test_not_found_without_code_uses_http_name() -> None:
    rec = Recorder(
        Reply.json(404, {"status": 404, "message": "The requested resource was not found"})
    )
    with pytest.raises(TwilioError) as info:
        call(rec, lambda c: c.fetch_message(CREDS, MESSAGE_SID))
    err = info.value
    assert (err.error, err.code, err.url_more_info) == ("NOT_FOUND", "NOT_FOUND", None)
    assert err.as_task_data() == {
        "error": "NOT_FOUND",
        "code": "NOT_FOUND",
        "message": "The requested resource was not found",
        "statusCode": "404",
    }


def test_non_json_error_body() -> None:
    rec = Recorder(Reply.text(502, "<html>Bad Gateway</html>"))
    with pytest.raises(TwilioError) as info:
        call(rec, send_sms)
    assert (info.value.error, info.value.message) == ("BAD_GATEWAY", "HTTP 502 Bad Gateway")
    assert info.value.outcome_unknown is True


def test_string_code_in_error_body() -> None:
    rec = Recorder(Reply.json(400, {"code": "21211", "message": "bad to"}))
    with pytest.raises(TwilioError) as info:
        call(rec, send_sms)
    assert (info.value.error, info.value.code) == ("INVALID_TO_PHONE_NUMBER_ERROR", 21211)


def test_unreadable_2xx_on_create_is_outcome_unknown() -> None:
    rec = Recorder(Reply.text(201, "not json"))
    with pytest.raises(TwilioError) as info:
        call(rec, send_sms)
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
        with pytest.raises(RuntimeError):
            await client.fetch_message(CREDS, MESSAGE_SID)

    asyncio.run(build())
