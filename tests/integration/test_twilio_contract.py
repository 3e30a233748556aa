"""Contract tests: (a) Twilio's official Python client works against the simulator for
messages and calls; (b) every request the connector sends, for every action and the
failure paths (outcome-unknown lookup, reconciliation fetch, caller-ID paging), is valid
against Twilio's official OpenAPI file."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from oai import OpenAPIChecker, check_request
from servers import run_app
from stack import ACCOUNT, FROM, TOKEN, running_stack
from twilio.rest import Client

from orchestrator.twilio.simulator import SimulatorConfig, create_app


@pytest.fixture
def client() -> Iterator[Client]:
    config = SimulatorConfig(account_sid=ACCOUNT, auth_token=TOKEN, callback_delay=0.01)
    with run_app(create_app(config)) as url:
        c = Client(ACCOUNT, TOKEN)
        c.api.base_url = url
        yield c


def test_official_client_messages_and_calls(client: Client) -> None:
    message = client.messages.create(to="+15551230001", from_=FROM, body="hi")
    assert client.messages(message.sid).fetch().sid == message.sid
    listed = client.messages.list(
        to="+15551230001", date_sent_after=datetime.now(UTC) - timedelta(days=1)
    )
    assert [m.sid for m in listed] == [message.sid]
    call = client.calls.create(
        to="+15551230002",
        from_=FROM,
        url="https://example.com/twiml",
        status_callback_event=["initiated", "completed"],
    )
    assert client.calls(call.sid).fetch().to == "+15551230002"
    for i in range(3):
        client.calls.create(to=f"+1555123001{i}", from_=FROM, url="https://example.com/t")
    assert len(client.calls.list(page_size=2)) == 4  # followed next_page_uri
    assert [c.sid for c in client.calls.list(to="+15551230002")] == [call.sid]


def test_checker_finds_what_the_spec_forbids() -> None:
    path = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    auth = {"authorization": "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()}
    form = {"content-type": "application/x-www-form-urlencoded", **auth}
    assert check_request("POST", path, "", b"To=%2B15551230001&From=%2B1&Body=x", form) == []
    assert check_request("POST", path, "", b"From=%2B1&Body=x", form)  # To is required
    assert check_request("POST", path, "", b"To=%2B1&Body=x&Bogus=1", form)  # unknown name
    assert check_request("GET", path, "DateSent%3E=2026-11-24", b"", auth)  # not a date-time
    assert check_request("GET", path, "", b"", {})  # no credentials


def test_every_connector_request_matches_the_openapi_file(db_url: str) -> None:
    checkers: list[OpenAPIChecker] = []

    def wrap(app: object) -> OpenAPIChecker:
        checkers.append(OpenAPIChecker(app))
        return checkers[-1]

    sim = SimulatorConfig(
        account_sid=ACCOUNT, auth_token=TOKEN, lose_callbacks=True, page_size_caller_ids=2
    )
    with running_stack(
        db_url, sim=sim, sim_wrap=wrap, reconcile_after=0.3, reconcile_interval=0.1
    ) as stack:
        ids = [
            stack.sms("+15551230001", ValidityPeriod=600)["task_id"],
            stack.create(
                {
                    "Number_to": "+15551230002",
                    "MessagingServiceSid": "MG" + "1" * 32,
                    "Body": "mms",
                    "MediaUrl": ["https://example.com/a.png", "https://example.com/b.png"],
                }
            )["task_id"],
            stack.create(
                {
                    "Number_to": "+15551230003",
                    "Number_from": FROM,
                    "Url": "https://example.com/twiml",
                    "StatusCallbackEvent": "initiated ringing answered completed",
                    "call_timeout": 1,  # callbacks are lost: the call is fetched
                },
                process="voice-call",
            )["task_id"],
            stack.create(
                {"smsTo": ["+15551230004", "+15551230005"], "smsFrom": FROM, "smsBody": "x"},
                process="send-to-many",
            )["task_id"],
        ]
        for task_id in ids[:2]:  # callbacks are lost: the sweep fetches each message
            assert stack.wait(task_id, timeout=30)["outcome"] == "success"
        assert stack.wait(ids[2], timeout=30)["node"]["id"] == "completed"
        stack.wait(ids[3])
        # An answer that never came: the connector lists Messages to find it.
        stack.sim_config(response_delay=2.5)
        stack.wait(stack.sms("+15551230006")["task_id"], timeout=30)
        stack.sim_config(response_delay=0.0)
        _deploy_caller_ids(stack)
        stack.wait(stack.create({}, process="retrieve-recipients")["task_id"])
        time.sleep(0.2)
    [checker] = checkers
    seen = {entry.split("/")[-1].split("?")[0] for entry in checker.checked}
    assert {"Messages.json", "Calls.json", "OutgoingCallerIds.json"} <= seen
    assert any(e.startswith("GET") and e.endswith("Messages.json") for e in checker.checked)
    assert any(e.startswith("GET") and "/Messages/" in e for e in checker.checked)
    assert any(e.startswith("GET") and "/Calls/" in e for e in checker.checked)
    assert checker.errors == []


def _deploy_caller_ids(stack: object) -> None:
    from test_twilio_actions import RECIPIENTS_PROCESS, _deploy

    _deploy(stack, RECIPIENTS_PROCESS)  # type: ignore[arg-type]
