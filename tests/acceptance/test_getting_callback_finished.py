"""A "Getting callback" copy whose original has finished (issue 12 item 4): it ends at
once in the success node "Original finished", and callbacks after that are kept in the
original's history, escalating nothing ("Original task not found" stays at 0)."""

from __future__ import annotations

import time
from typing import Any

import httpx
from sqlalchemy import update
from stack import ACCOUNT, TOKEN, Stack, running_stack

from orchestrator.store.tables import tasks
from orchestrator.twilio.signature import compute_signature
from orchestrator.twilio.simulator import SimulatorConfig


def _callback(stack: Stack, sid: str, status: str) -> None:
    url = stack.callback_url("getting-callback", "twilio")
    params = {"AccountSid": ACCOUNT, "MessageSid": sid, "MessageStatus": status}
    headers = {"X-Twilio-Signature": compute_signature(url, params, TOKEN)}
    httpx.post(url, data=params, headers=headers).raise_for_status()


def _late(stack: Stack, task_id: str) -> list[dict[str, Any]]:
    """The original's callback_late events, once the engine has applied the callback."""
    deadline = time.time() + 10
    while True:
        late = [e for e in stack.history(task_id) if e["kind"] == "callback_late"]
        if late or time.time() > deadline:
            return late
        time.sleep(0.05)


def _counts(stack: Stack) -> dict[str, int]:
    view = stack.client.get("/api/v1/processes/getting-callback").json()
    return {node["id"]: node["count"] for node in view["nodes"]}


def test_copy_of_a_reconciled_original_ends_at_once_and_late_callbacks_escalate_nothing(
    db_url: str,
) -> None:
    sim = SimulatorConfig(
        account_sid=ACCOUNT, auth_token=TOKEN, callback_delay=0.02, lose_callbacks=True
    )
    with running_stack(db_url, sim) as stack:
        # No callback comes: the original's wait limit reconciles it with Twilio.
        task = stack.sms("+15551230001", status_timeout=1)
        done = stack.wait(task["task_id"], timeout=30)
        assert done["node"]["id"] == "delivered"
        copy = stack.wait(stack.child(task["task_id"])["task_id"], timeout=10)
        assert (copy["node"]["title"], copy["outcome"]) == ("Original finished", "success")
        # A late callback: kept in the original's history, nothing escalates.
        _callback(stack, done["data"]["sid"], "delivered")
        late = _late(stack, task["task_id"])
        assert late[0]["detail"]["fields"]["MessageSid"] == done["data"]["sid"]
        assert stack.task(copy["task_id"])["node"]["id"] == "original_finished"
        assert _counts(stack)["original_not_found"] == 0


def test_callback_for_an_original_that_ended_elsewhere_is_no_escalation(db_url: str) -> None:
    with running_stack(
        db_url, SimulatorConfig(account_sid=ACCOUNT, auth_token=TOKEN, lose_callbacks=True)
    ) as stack:
        task = stack.sms("+15551230001")
        waiting = stack.wait(task["task_id"], state="waiting")
        copy = stack.wait(stack.child(task["task_id"])["task_id"], state="waiting")
        # The original ended without telling its copy (an operator closed it, say).
        with stack.db.write() as conn:
            conn.execute(
                update(tasks)
                .where(tasks.c.id == task["task_id"])
                .values(
                    state="done", outcome="escalation", node_id="callback_timeout", active_ref=None
                )
            )
        _callback(stack, waiting["data"]["sid"], "delivered")
        ended = stack.wait(copy["task_id"])
        assert (ended["node"]["id"], ended["outcome"]) == ("original_finished", "success")
        assert _counts(stack)["original_not_found"] == 0
