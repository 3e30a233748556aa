"""Seed 003's Twilio package API (issue 12 item 5): the seed's request examples, success
and error, against the simulator; each request is a task in a shipped process."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from stack import ACCOUNT, FROM, TOKEN, Stack, running_stack

SMS_EXAMPLE = {  # the seed's example, with the simulator's account and a reachable number
    "accountSid": ACCOUNT,
    "accountToken": TOKEN,
    "from": "+15005550006",
    "to": "+15551230001",
    "body": "text",
}


def _post(stack: Stack, operation: str, body: dict[str, Any]) -> httpx.Response:
    return stack.client.post(f"/api/twilio/{operation}", json=body)


def test_send_sms_mms_and_call_succeed_with_twilios_resource(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with running_stack(db_url, twilio_account_sid=None, twilio_auth_token=None) as stack:
        sms = _post(stack, "sendSms", SMS_EXAMPLE)
        assert sms.status_code == 200, sms.text
        answer = sms.json()
        assert answer["callback"] == "success"
        to = answer["contextWrites"]["to"]
        assert to["sid"].startswith("SM") and to["status"] == "queued"
        assert (to["to"], to["from"], to["body"]) == ("+15551230001", FROM, "text")
        assert to["account_sid"] == ACCOUNT and to["uri"].endswith(f"{to['sid']}.json")
        # The message is followed to its final status like any other.
        task = stack.wait(to["task_id"])
        assert (task["process"], task["node"]["id"]) == ("sending-sms", "delivered")
        assert task["data"]["sid"] == to["sid"]

        mms = _post(
            stack, "sendMms", {**SMS_EXAMPLE, "mediaUrl": "http://demo.twilio.com/docs/voice.xml"}
        ).json()
        assert mms["callback"] == "success" and mms["contextWrites"]["to"]["sid"].startswith("MM")

        call = _post(
            stack,
            "makeCall",
            {
                "accountSid": ACCOUNT,
                "accountToken": TOKEN,
                "from": "+15005550006",
                "to": "+1 555 123 0002",  # typed as people do: normalised
                "url": "http://demo.twilio.com/docs/voice.xml",
            },
        ).json()
        assert call["callback"] == "success", call
        placed = call["contextWrites"]["to"]
        assert placed["sid"].startswith("CA") and placed["to"] == "+15551230002"
        assert stack.task(placed["task_id"])["process"] == "voice-call"
        shown = [stack.client.get(f"/api/v1/tasks/{to['task_id']}/history").text, sms.text]
    for text in (*shown, caplog.text):
        assert TOKEN not in text


ERRORS: list[tuple[str, dict[str, Any], str]] = [
    # The seed's own request example: its placeholder credentials are named, not sent.
    (
        "sendSms",
        {
            "accountSid": "XXXX",
            "accountToken": "XXXX",
            "from": "+15005550006",
            "to": "+150055444006",
            "body": "text",
        },
        "INVALID_INPUT: accountSid must be AC followed by 32 hex digits",
    ),
    (
        "sendSms",
        {**SMS_EXAMPLE, "accountToken": "wrong"},
        "[HTTP 401] Unable to create record: Authenticate",
    ),
    (
        "sendSms",
        {**SMS_EXAMPLE, "to": "+15005550001"},
        "[HTTP 400] Unable to create record: "
        "The 'To' number +15005550001 is not a valid phone number.",
    ),
    ("sendSms", {**SMS_EXAMPLE, "from": None}, "MISSING_INPUT: from is required"),
    ("sendSms", {**SMS_EXAMPLE, "to": "(555) 123-0001"}, "INVALID_INPUT: to must be an E.164"),
    ("sendSms", {**SMS_EXAMPLE, "method": "TEST"}, "INVALID_INPUT: unknown field(s) method"),
    ("sendMms", SMS_EXAMPLE, "MISSING_INPUT: mediaUrl is required"),
    ("makeCall", {**SMS_EXAMPLE, "body": None}, "MISSING_INPUT: url is required"),
]


def test_errors_have_the_packages_shape_and_send_nothing(db_url: str) -> None:
    with running_stack(db_url, twilio_account_sid=None, twilio_auth_token=None) as stack:
        for operation, body, reason in ERRORS:
            r = _post(stack, operation, body)
            assert r.status_code == 200, r.text
            answer = r.json()
            assert answer["callback"] == "error", answer
            assert answer["contextWrites"]["to"].startswith(reason), answer
        assert stack.sim_stats()["messages_created"] == 0
        assert _post(stack, "sendFax", SMS_EXAMPLE).status_code == 404


def test_access_as_for_api_v1(db_url: str) -> None:
    with running_stack(db_url, api_keys="pkg:package-key-0123456789") as stack:
        assert _post(stack, "sendSms", SMS_EXAMPLE).status_code == 401
        stack.client.headers["Authorization"] = "Bearer package-key-0123456789"
        assert _post(stack, "sendSms", SMS_EXAMPLE).json()["callback"] == "success"
        spec = stack.client.get("/api/v1/openapi.json").json()
        assert {"/api/twilio/sendSms", "/api/twilio/sendMms", "/api/twilio/makeCall"} <= set(
            spec["paths"]
        )
