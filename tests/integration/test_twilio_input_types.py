"""Wrong-type Twilio input is refused, not sent as Python text (issue 12 item 3): an
object or a list where Twilio takes text ends in INVALID_INPUT naming the field, and
nothing reaches Twilio."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from stack import FROM, Stack, running_stack


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url) as s:
        yield s


CASES: list[tuple[str, dict[str, Any], str]] = [
    ("sending-sms", {"Number_to": "+15551230001", "Number_from": FROM, "Body": {"a": 1}}, "Body"),
    ("sending-sms", {"Number_to": "+15551230001", "Number_from": FROM, "Body": ["x"]}, "Body"),
    ("sending-sms", {"Number_to": ["+15551230001"], "Number_from": FROM, "Body": "x"}, "Number_to"),
    ("sending-sms", {"Number_to": "+15551230001", "Number_from": True, "Body": "x"}, "Number_from"),
    (
        "sending-sms",
        {"Number_to": "+15551230001", "Number_from": FROM, "Body": "x", "MediaUrl": [{"u": 1}]},
        "MediaUrl",
    ),
    ("send-to-many", {"smsTo": "+15551230001", "smsFrom": FROM, "smsBody": {"a": 1}}, "smsBody"),
    ("send-to-many", {"smsTo": "+15551230001", "smsFrom": FROM, "smsBody": ["a"]}, "smsBody"),
    (
        "voice-call",
        {"Number_to": "+15551230001", "Number_from": FROM, "Url": {"x": "https://e.com"}},
        "Url",
    ),
]


def test_wrong_types_are_invalid_input_and_nothing_is_sent(stack: Stack) -> None:
    tasks = [(stack.create(data, process=p), field) for p, data, field in CASES]
    for task, field in tasks:
        done = stack.wait(task["task_id"])
        assert done["outcome"] == "escalation"
        assert (done["data"]["error"], done["data"]["field"]) == ("INVALID_INPUT", field), done
    assert stack.sim_stats()["requests"] == 0
