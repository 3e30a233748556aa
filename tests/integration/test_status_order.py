"""A lower Twilio status never overwrites a higher one, also while the task still waits.

The simulator's reorder option sends the final status first, so the late one meets a
finished task; here the task is still waiting (``sent``) when ``queued`` arrives.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from stack import ACCOUNT, TOKEN, Stack, running_stack

from orchestrator.twilio.signature import compute_signature


def _post(url: str, params: dict[str, str]) -> httpx.Response:
    sig = compute_signature(url, params, TOKEN)
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": sig})


def _events(stack: Stack, task_id: str, kind: str, count: int) -> list[dict[str, Any]]:
    deadline = time.time() + 10
    while True:
        found = [e for e in stack.history(task_id) if e["kind"] == kind]
        if len(found) >= count:
            return found
        assert time.time() < deadline, f"no {count} {kind} events: {stack.history(task_id)}"
        time.sleep(0.05)


def test_a_lower_status_on_a_waiting_task_is_recorded_not_applied(db_url: str) -> None:
    with running_stack(db_url) as stack:
        task_id = stack.sms("+15551230000")["task_id"]  # the simulator sends no callbacks
        sid = stack.wait(task_id, state="waiting")["data"]["sid"]
        child_id = stack.child(task_id)["task_id"]
        url = stack.callback_url("getting-callback", "twilio")
        base = {"AccountSid": ACCOUNT, "MessageSid": sid}

        assert _post(url, {**base, "MessageStatus": "sent"}).json()["status"] == "accepted"
        _events(stack, child_id, "callback", 1)
        child = stack.wait(child_id, state="waiting")
        assert child["data"]["MessageStatus"] == "sent"

        assert _post(url, {**base, "MessageStatus": "queued"}).json()["status"] == "accepted"
        ignored = _events(stack, child_id, "callback_ignored", 1)
        assert ignored[0]["detail"]["fields"]["MessageStatus"] == "queued"
        assert ignored[0]["detail"]["reason"] == "status does not advance"
        child = stack.wait(child_id, state="waiting")
        assert child["data"]["MessageStatus"] == "sent"
        assert len([e for e in stack.history(child_id) if e["kind"] == "callback"]) == 1
        assert stack.task(task_id)["data"]["status"] == "sent"

        # A higher one still moves it on.
        assert _post(url, {**base, "MessageStatus": "delivered"}).json()["status"] == "accepted"
        assert stack.wait(task_id)["node"]["id"] == "delivered"
