"""The shipped "Notify customer" process: Sending SMS through call_process, with a
fallback SMS when the first one ends undelivered or failed (simulator numbers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from stack import FROM, Stack, running_stack

from orchestrator.store.tables import tasks

DELIVERED, DELIVERED_2, UNDELIVERED, FAILED = (
    "+15551230001",
    "+15551230002",
    "+15551233003",
    "+15551233008",
)


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url) as s:
        yield s


def notify(stack: Stack, phone: str, **extra: str) -> dict[str, Any]:
    data = {"Phone": phone, "Body": "hi", "Number_from": FROM, **extra}
    return stack.run("notify-customer", data, timeout=30)


def test_delivered_first_time(stack: Stack) -> None:
    done = notify(stack, DELIVERED)
    assert (done["outcome"], done["node"]["id"]) == ("success", "notified")
    assert done["data"]["status"] == "delivered"
    assert done["data"]["sid"].startswith("SM")


def test_undelivered_falls_back(stack: Stack) -> None:
    done = notify(stack, UNDELIVERED, Fallback_phone=DELIVERED_2, Fallback_body="hi again")
    assert (done["outcome"], done["node"]["id"]) == ("success", "notified_by_fallback")
    assert (done["data"]["first_status"], done["data"]["first_code"]) == ("undelivered", "30003")
    assert done["data"]["Number_to"] == DELIVERED_2
    assert done["data"]["error"] is None


def test_fallback_fails_too(stack: Stack) -> None:
    done = notify(stack, FAILED, Fallback_phone=UNDELIVERED)
    assert (done["outcome"], done["node"]["id"]) == ("escalation", "not_notified")
    assert (done["data"]["error"], done["data"]["status"]) == ("rpc_exception", "undelivered")


def test_refused_request_is_not_retried(stack: Stack) -> None:
    done = notify(stack, "12345")
    assert (done["outcome"], done["node"]["id"]) == ("escalation", "not_notified")
    assert done["data"]["code"] == "INVALID_INPUT"
    with stack.db.read() as conn:
        calls = conn.execute(
            select(func.count()).select_from(tasks).where(tasks.c.parent_task_id == done["task_id"])
        ).scalar_one()
    assert calls == 1  # no fallback for a request Twilio refused
