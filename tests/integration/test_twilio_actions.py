"""Each ``twilio`` action end to end against the simulator: send_mms (MessagingServiceSid,
ValidityPeriod), make_call with call status callbacks, list_caller_ids over several pages,
send_to_many with per-message followers, and API-key credentials."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from stack import ACCOUNT, FROM, TOKEN, Stack, running_stack

from orchestrator.twilio.simulator import SimulatorConfig

SERVICE = "MG" + "1" * 32
MEDIA = [f"https://example.com/{i}.jpg" for i in range(3)]


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url) as s:
        yield s


def _sim(stack: Stack, what: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = httpx.get(f"{stack.sim}/_sim/{what}").json()
    return items


def test_mms_through_messaging_service_with_validity_period(stack: Stack) -> None:
    task = stack.create(
        {
            "Number_to": "+15551230001",
            "MessagingServiceSid": SERVICE,
            "Body": "look",
            "MediaUrl": MEDIA,
            "ValidityPeriod": 600,
        }
    )
    done = stack.wait(task["task_id"])
    assert done["node"]["id"] == "delivered"
    assert done["data"]["sid"].startswith("MM")
    [message] = _sim(stack, "messages")
    assert message["messaging_service_sid"] == SERVICE
    assert message["num_media"] == "3"
    assert message["_validity_period"] == "600"
    assert message["from"] == "+15005550006"  # picked from the service's pool


def test_send_mms_action_requires_media_and_caps_at_ten(stack: Stack) -> None:
    too_many = [f"https://example.com/{i}.png" for i in range(11)]
    done = stack.wait(stack.sms("+15551230001", MediaUrl=too_many)["task_id"])
    assert (done["data"]["error"], done["data"]["field"]) == ("INVALID_INPUT", "MediaUrl")
    assert stack.sim_stats()["requests"] == 0


def test_make_call_follows_call_status_callbacks_to_completed(stack: Stack) -> None:
    task = stack.create(
        {"Number_to": "+15551230001", "Number_from": FROM, "Url": "https://example.com/twiml"},
        process="voice-call",
    )
    done = stack.wait(task["task_id"])
    assert done["node"]["id"] == "completed", done
    assert done["data"]["sid"].startswith("CA")
    assert done["data"]["status"] == "completed"
    assert done["data"]["CallDuration"] == "4"
    follower = stack.wait(stack.child(task["task_id"])["task_id"])
    assert follower["ref"] == done["data"]["sid"]
    statuses = [
        e["detail"]["fields"]["CallStatus"]
        for e in stack.history(follower["task_id"])
        if e["kind"] == "callback"
    ]
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]
    [call] = _sim(stack, "calls")
    assert call["status"] == "completed"


@pytest.mark.parametrize(
    ("to", "status"), [("+15551234001", "busy"), ("+15551234000", "no-answer")]
)
def test_make_call_busy_or_no_answer_escalates(stack: Stack, to: str, status: str) -> None:
    task = stack.create(
        {"Number_to": to, "Number_from": FROM, "ApplicationSid": "AP" + "2" * 32},
        process="voice-call",
    )
    done = stack.wait(task["task_id"])
    assert done["node"]["id"] == "call_not_completed"
    assert done["data"]["code"] == status


def test_lost_call_callbacks_are_reconciled_by_fetching_the_call(db_url: str) -> None:
    sim = SimulatorConfig(account_sid=ACCOUNT, auth_token=TOKEN, lose_callbacks=True)
    with running_stack(db_url, sim=sim) as stack:
        task = stack.create(
            {
                "Number_to": "+15551230001",
                "Number_from": FROM,
                "Url": "https://example.com/t",
                "call_timeout": 1,
            },
            process="voice-call",
        )
        done = stack.wait(task["task_id"])
        assert done["node"]["id"] == "completed", done
        assert done["data"]["CallDuration"] == "4"
        assert "reconcile" in [e["to_node_id"] for e in stack.history(task["task_id"])]


def test_make_call_from_a_client_identity_to_a_sip_address(stack: Stack) -> None:
    task = stack.create(
        {
            "Number_to": "sip:alice@example.com",
            "Number_from": "client:support",
            "Url": "https://example.com/t",
        },
        process="voice-call",
    )
    assert stack.wait(task["task_id"])["node"]["id"] == "completed"
    [call] = _sim(stack, "calls")
    assert (call["from"], call["to"]) == ("client:support", "sip:alice@example.com")


def test_make_call_input_and_api_errors(stack: Stack) -> None:
    no_url = stack.create({"Number_to": "+15551230001", "Number_from": FROM}, process="voice-call")
    done = stack.wait(no_url["task_id"])
    assert (done["data"]["error"], done["data"]["field"]) == ("MISSING_INPUT", "Url")
    blocked = stack.create(
        {"Number_to": "+15005550004", "Number_from": FROM, "Url": "https://example.com/t"},
        process="voice-call",
    )
    done = stack.wait(blocked["task_id"])
    assert done["node"]["id"] == "api_error"
    assert (done["data"]["code"], done["data"]["error"]) == (21216, "INVALID_TO_PHONE_NUMBER_ERROR")


RECIPIENTS_PROCESS = {
    "slug": "retrieve-recipients",
    "title": "Retrieve recipients",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "list"}]},
        "list": {
            "on_error": "failed",
            "logics": [
                {"type": "twilio", "action": "list_caller_ids", "params": {}},
                {"type": "go", "to": "done"},
            ],
        },
        "done": {"kind": "success"},
        "failed": {"kind": "escalation"},
    },
}


def _deploy(stack: Stack, definition: dict[str, Any]) -> None:
    r = stack.client.post("/api/v1/processes", json=definition)
    assert r.status_code in (200, 201), r.text


def test_list_caller_ids_reads_every_page(db_url: str) -> None:
    numbers = [f"+1415555{i:04d}" for i in range(7)]
    sim = SimulatorConfig(
        account_sid=ACCOUNT, auth_token=TOKEN, caller_ids=numbers, page_size_caller_ids=3
    )
    with running_stack(db_url, sim=sim) as stack:
        _deploy(stack, RECIPIENTS_PROCESS)
        done = stack.wait(stack.create({}, process="retrieve-recipients")["task_id"])
        assert done["node"]["id"] == "done", done
        assert done["data"]["recipient_list"] == numbers
        assert done["data"]["recipients"] == ",".join(numbers)
        assert stack.sim_stats()["requests"] == 3  # pages of 3, 3 and 1


def test_send_to_many_maps_sids_lists_refusals_and_follows_each(stack: Stack) -> None:
    to = ["+15551230001", "+15005550001", "+15551233003", "+15551230002"]
    task = stack.create(
        {
            "smsTo": to,
            "smsFrom": FROM,
            "smsBody": "Hi {{ name }}, order {{ order.id }}",
            "metadata": {"name": "Ann", "order": {"id": 42}},
        },
        process="send-to-many",
    )
    done = stack.wait(task["task_id"])
    assert done["node"]["id"] == "sent", done
    result = done["data"]["smsResult"]
    assert sorted(result.values()) == sorted(n for n in to if n != "+15005550001")
    assert done["data"]["failedNumbers"] == "+15005550001"
    assert done["data"]["failedDetails"]["+15005550001"]["code"] == 21211
    messages = _sim(stack, "messages")
    assert {m["body"] for m in messages} == {"Hi Ann, order 42"}
    assert stack.sim_stats()["messages_created"] == 3
    # One follower per sent message, each at its own final status.
    outcomes = {}
    for sid, number in result.items():
        r = stack.client.get("/api/v1/processes/message-status/tasks", params={"ref": sid})
        [follower] = r.json()["tasks"]
        outcomes[number] = stack.wait(follower["task_id"])["node"]["id"]
    assert outcomes == {
        "+15551230001": "delivered",
        "+15551233003": "not_delivered",
        "+15551230002": "delivered",
    }


def test_send_to_many_checks_every_number_first(stack: Stack) -> None:
    task = stack.create(
        {"smsTo": "+15551230001, 12345", "smsFrom": FROM, "smsBody": "x"}, process="send-to-many"
    )
    done = stack.wait(task["task_id"])
    assert (done["data"]["error"], done["data"]["field"]) == ("INVALID_INPUT", "smsTo")
    assert stack.sim_stats()["requests"] == 0


def test_send_to_many_template_error_names_the_metadata(stack: Stack) -> None:
    task = stack.create(
        {"smsTo": ["+15551230001"], "smsFrom": FROM, "smsBody": "Hi {{ nobody.name }}"},
        process="send-to-many",
    )
    done = stack.wait(task["task_id"])
    assert done["data"]["error"] == "TEMPLATE_METADATA_ERROR"
    assert stack.sim_stats()["requests"] == 0


KEY_SID, KEY_SECRET = "SK" + "3" * 32, "api-key-secret"


def test_api_key_credentials_per_task(db_url: str) -> None:
    """The server holds TWILIO_AUTH_TOKEN of the same account, so only a per-task key
    that is really used can make the wrong secret fail (issue 12 item 1)."""
    sim = SimulatorConfig(
        account_sid=ACCOUNT, auth_token=TOKEN, callback_delay=0.02, api_keys={KEY_SID: KEY_SECRET}
    )
    with running_stack(db_url, sim) as stack:
        key = {"AccountSid": ACCOUNT, "ApiKeySid": KEY_SID}
        good = stack.sms("+15551230001", "via key", **key, ApiKeySecret=KEY_SECRET)
        bad = stack.sms("+15551230002", "wrong key", **key, ApiKeySecret="not-the-secret")
        call = stack.create(
            {"Number_to": "+15551230003", "Number_from": FROM, "Url": "https://example.com/t"}
            | key
            | {"ApiKeySecret": "not-the-secret"},
            process="voice-call",
        )
        many = stack.create(
            {"smsTo": "+15551230004", "smsFrom": FROM, "smsBody": "x"}
            | key
            | {"ApiKeySecret": "not-the-secret"},
            process="send-to-many",
        )
        assert stack.wait(good["task_id"])["node"]["id"] == "delivered"
        for task in (bad, call, many):
            done = stack.wait(task["task_id"])
            assert done["node"]["id"] == "api_error", done
            assert done["data"]["error"] == "AUTHENTICATION_CONNECTION_ERROR", done
        # Only the message with the right secret reached Twilio's records.
        assert [m["to"] for m in _sim(stack, "messages")] == ["+15551230001"]
        assert _sim(stack, "calls") == []
        shown = str(stack.task(good["task_id"])) + str(stack.history(good["task_id"]))
        assert KEY_SECRET not in shown


def test_server_default_api_key(db_url: str) -> None:
    with running_stack(
        db_url,
        SimulatorConfig(account_sid=ACCOUNT, auth_token=TOKEN, api_keys={KEY_SID: KEY_SECRET}),
        twilio_auth_token=None,
        twilio_api_key=KEY_SID,
        twilio_api_secret=KEY_SECRET,
    ) as stack:
        # Callbacks of the default account need its auth token to be verified, so only
        # the create is checked here.
        task = stack.sms("+15551230001")
        waiting = stack.wait(task["task_id"], state="waiting")
        assert waiting["data"]["sid"].startswith("SM")
