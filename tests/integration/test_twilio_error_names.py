"""Every symbolic error name (seed 004) from a real simulator answer, end to end: the
task ends in "Twilio API error" with the name, Twilio's code, message and more-info link."""

from __future__ import annotations

from typing import Any

import pytest
from stack import ACCOUNT, FROM, running_stack

from orchestrator.servers import free_port
from orchestrator.twilio.errors import HTTP_STATUS_NAMES

# (task data changes, simulator fail_next, expected error name, expected code)
MAGIC: list[tuple[dict[str, Any], str, int]] = [
    ({"Number_to": "+15005550001"}, "INVALID_TO_PHONE_NUMBER_ERROR", 21211),
    ({"Number_to": "+15005550009"}, "INVALID_TO_PHONE_NUMBER_ERROR", 21614),
    ({"Number_from": "+15005550001"}, "INVALID_FROM_PHONE_NUMBER_ERROR", 21212),
    ({"Number_from": "+15005550007"}, "INVALID_FROM_PHONE_NUMBER_ERROR", 21606),
    ({"Number_to": "+15005550003"}, "INVALID_REGION_TO_PHONE_NUMBER_ERROR", 21408),
    ({"Number_to": "+15005550004"}, "INVALID_REQUEST_ERROR", 21610),
    ({"AccountSid": ACCOUNT, "AuthToken": "wrong"}, "AUTHENTICATION_CONNECTION_ERROR", 20003),
]
# Answers only a misbehaving Twilio (or a proxy in front of it) gives: [status, code].
FORCED: list[tuple[list[list[int]], str, int | str]] = [
    ([[403, 20008]], "PERMISSION_DENIED_ERROR", 20008),
    ([[400, 21608]], "PERMISSION_DENIED_ERROR", 21608),
    ([[401, 20005]], "PERMISSION_DENIED_ERROR", 20005),  # the code wins over the status
    ([[401, 20151]], "AUTHENTICATION_CONNECTION_ERROR", 20151),
    ([[302, 0]], "UNKNOWN_ERROR", "UNKNOWN_ERROR"),
    ([[501, 0]], "NOT_IMPLEMENTED", "NOT_IMPLEMENTED"),
    ([[429, 0]] * 4, "TOO_MANY_REQUESTS", "TOO_MANY_REQUESTS"),  # retried, then given up
    ([[503, 0]] * 4, "SERVICE_UNAVAILABLE", "SERVICE_UNAVAILABLE"),
    # A create answered 500/502/504 may have been carried out: looked up, never resent.
    ([[500, 0]], "TWILIO_OUTCOME_UNKNOWN", "TWILIO_OUTCOME_UNKNOWN"),
    ([[502, 0]], "TWILIO_OUTCOME_UNKNOWN", "TWILIO_OUTCOME_UNKNOWN"),
    ([[504, 0]], "TWILIO_OUTCOME_UNKNOWN", "TWILIO_OUTCOME_UNKNOWN"),
] + [
    ([[status, 0]], name, name)
    for status, name in HTTP_STATUS_NAMES.items()
    if 400 <= status < 500 and status != 429
]


def _sms(**changes: Any) -> dict[str, Any]:
    return {"Number_to": "+15551230001", "Number_from": FROM, "Body": "x", **changes}


def _assert_escalated(done: dict[str, Any], name: str, code: int | str) -> None:
    assert done["node"]["id"] == "api_error", done
    assert (done["data"]["error"], done["data"]["code"]) == (name, code), done["data"]
    assert done["data"]["message"]
    if isinstance(code, int):
        assert done["data"]["url_more_info"] == f"https://www.twilio.com/docs/errors/{code}"


def test_every_error_name_from_a_simulator_answer(db_url: str) -> None:
    with running_stack(db_url) as stack:
        started = [(stack.create(_sms(**changes))["task_id"], n, c) for changes, n, c in MAGIC]
        for task_id, name, code in started:
            _assert_escalated(stack.wait(task_id), name, code)
        for answers, name, code in FORCED:
            stack.sim_config(fail_next=answers)
            _assert_escalated(stack.wait(stack.create(_sms())["task_id"]), name, code)
            assert stack.sim_stats()["messages_created"] == 0
        # Input errors never reach the simulator.
        before = stack.sim_stats()["requests"]
        for data, name in [
            (_sms(Body=None), "MISSING_INPUT"),
            (_sms(Number_to="+1555"), "INVALID_INPUT"),
            (_sms(ValidityPeriod="forever"), "INVALID_INPUT"),
        ]:
            done = stack.wait(stack.create({k: v for k, v in data.items() if v})["task_id"])
            assert done["data"]["error"] == name
        assert stack.sim_stats()["requests"] == before


@pytest.mark.parametrize("process", ["sending-sms", "voice-call"])
def test_unreachable_twilio_is_a_connection_error(db_url: str, process: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    data = _sms(Url="https://example.com/twiml")
    with running_stack(db_url, twilio_api_url=closed) as stack:
        done = stack.wait(stack.create(data, process=process)["task_id"])
    _assert_escalated(done, "TWILIO_CONNECTION_ERROR", "TWILIO_CONNECTION_ERROR")
