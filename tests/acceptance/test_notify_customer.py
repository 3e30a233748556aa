"""The shipped "Notify customer" process: Sending SMS through call_process, with a voice
call (Voice call through call_process) when the SMS ends undelivered or failed. End to
end against the Twilio simulator, whose outcome depends on the To number's suffix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from stack import FROM, Stack, running_stack

from orchestrator.store.tables import tasks

DELIVERED, UNDELIVERED, FAILED = "+15551230001", "+15551233003", "+15551233008"
# Call outcomes by suffix (simulator_rules.DEFAULT_CALL_RULES; other numbers complete).
BUSY, NO_ANSWER, CALL_FAILS = "+15551234001", "+15551234000", "+15551234009"  # 4009: set below
CALL_BLOCKED = "+15005550004"  # Twilio refuses the Calls create: 21216


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url) as s:
        yield s


def notify(stack: Stack, phone: str, **extra: str) -> dict[str, Any]:
    data = {"Phone": phone, "Body": "hi", "Number_from": FROM, **extra}
    return stack.run("notify-customer", data, timeout=30)


def children(stack: Stack, task_id: str) -> dict[str, dict[str, Any]]:
    """The tasks the notify task called, by process slug."""
    with stack.db.read() as conn:
        ids = conn.execute(select(tasks.c.id).where(tasks.c.parent_task_id == task_id)).scalars()
        found = [stack.task(i) for i in ids]
    return {t["process"]: t for t in found}


def sim_calls(stack: Stack) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = httpx.get(f"{stack.sim}/_sim/calls").json()
    return calls


def test_delivered_first_time(stack: Stack) -> None:
    done = notify(stack, DELIVERED)
    assert (done["outcome"], done["node"]["id"]) == ("success", "notified")
    assert done["data"]["status"] == "delivered"
    assert done["data"]["sid"].startswith("SM")
    assert list(children(stack, done["task_id"])) == ["sending-sms"]
    assert sim_calls(stack) == []


def test_undelivered_sms_falls_back_to_a_call_reading_the_body(stack: Stack) -> None:
    done = notify(stack, UNDELIVERED, Body="Parcel <42> & co")
    assert (done["outcome"], done["node"]["id"]) == ("success", "notified_by_call")
    assert (done["data"]["sms_status"], done["data"]["sms_code"]) == ("undelivered", "30003")
    assert (done["data"]["status"], done["data"]["CallDuration"]) == ("completed", "4")
    assert done["data"]["sid"].startswith("CA")
    assert (done["data"]["error"], done["data"]["code"]) == (None, None)
    call = children(stack, done["task_id"])["voice-call"]
    assert call["node"]["id"] == "completed"
    # The Body is read aloud, XML-escaped; no Url since make_call takes only one source.
    assert call["data"]["Twiml"] == "<Response><Say>Parcel &lt;42&gt; &amp; co</Say></Response>"
    assert call["data"]["Url"] is None
    [sim_call] = sim_calls(stack)
    assert (sim_call["to"], sim_call["from"], sim_call["status"]) == (
        UNDELIVERED,
        FROM,
        "completed",
    )


def test_call_options_fallback_phone_caller_and_twiml_url(stack: Stack) -> None:
    caller = "+15551110000"
    done = notify(
        stack, FAILED, Fallback_phone=DELIVERED, Call_from=caller, Url="https://example.com/t"
    )
    assert done["node"]["id"] == "notified_by_call"
    assert done["data"]["sms_status"] == "failed"
    call = children(stack, done["task_id"])["voice-call"]
    assert (call["data"]["Url"], call["data"]["Twiml"]) == ("https://example.com/t", None)
    [sim_call] = sim_calls(stack)
    assert (sim_call["to"], sim_call["from"]) == (DELIVERED, caller)


@pytest.mark.parametrize(
    ("phone", "code"),
    [(BUSY, "busy"), (NO_ANSWER, "no-answer"), (CALL_FAILS, "failed"), (CALL_BLOCKED, "21216")],
)
def test_call_not_completed_escalates_with_its_code(stack: Stack, phone: str, code: str) -> None:
    rules = [["4000", "no-answer", None], ["4001", "busy", None], ["4009", "failed", None]]
    stack.sim_config(call_rules=rules)
    done = notify(stack, UNDELIVERED, Fallback_phone=phone)
    assert (done["outcome"], done["node"]["id"]) == ("escalation", "not_notified")
    assert (done["data"]["error"], done["data"]["code"]) == ("rpc_exception", code)
    assert done["data"]["sms_status"] == "undelivered"
    call = children(stack, done["task_id"])["voice-call"]
    expected = "api_error" if phone == CALL_BLOCKED else "call_not_completed"
    assert (call["outcome"], call["node"]["id"]) == ("escalation", expected)
    if phone != CALL_BLOCKED:
        assert done["data"]["message"] == f"the call ended {code}"


def test_refused_request_is_not_retried(stack: Stack) -> None:
    done = notify(stack, "12345")
    assert (done["outcome"], done["node"]["id"]) == ("escalation", "not_notified")
    assert done["data"]["code"] == "INVALID_INPUT"
    # No call for a request Twilio refused: the SMS task is the only one.
    assert list(children(stack, done["task_id"])) == ["sending-sms"]
    assert sim_calls(stack) == []
