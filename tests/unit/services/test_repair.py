"""Repair over the API and the CLI (SPEC §7): retry, cancel, move, their bulk forms, the
audit in the history, and the guard against sending an SMS twice."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from stack import FROM, Stack, running_stack

from orchestrator.cli import main

SEND_THEN_FAIL = {
    "slug": "send-then-fail",
    "title": "Send then fail",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "send"}]},
        "send": {
            "title": "Send",
            "on_error": "gave_up",
            "logics": [
                {
                    "type": "twilio",
                    "action": "send_sms",
                    "params": {"To": "{{ to }}", "From": FROM, "Body": "hi"},
                },
                {"type": "go", "to": "failed"},
            ],
        },
        "failed": {"kind": "escalation", "title": "Failed"},
        "gave_up": {"kind": "escalation", "title": "Gave up"},
    },
}
WAITER = {
    "slug": "waiter",
    "title": "Waiter",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "wait"}]},
        "wait": {
            "kind": "wait",
            "logics": [
                {"type": "wait_callback"},
                {"type": "condition", "if": [{"param": "to", "value": "other"}], "to": "other"},
                {"type": "go", "to": "ok"},
            ],
        },
        "other": {
            "kind": "wait",
            "logics": [{"type": "wait_callback"}, {"type": "go", "to": "ok"}],
        },
        "ok": {"kind": "success"},
        "failed": {"kind": "escalation"},
    },
}


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url) as s:
        s.deploy(SEND_THEN_FAIL, WAITER)
        yield s


def _post(s: Stack, path: str, body: dict[str, Any] | None = None) -> Any:
    return s.client.post(path, json=body) if body is not None else s.client.post(path)


def _events(s: Stack, task_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in s.history(task_id) if e["kind"] == kind]


def test_retry_refuses_to_resend_unless_the_node_is_named(stack: Stack) -> None:
    task = stack.run("send-then-fail", {"to": "+15551230001"})
    assert task["node"]["id"] == "failed"
    assert stack.sim_stats()["messages_created"] == 1
    r = _post(stack, f"/api/v1/tasks/{task['task_id']}/retry")
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "ALREADY_SENT"
    assert err["details"]["node"] == "send"
    assert err["details"]["sent"][0]["sid"].startswith("SM")
    assert stack.task(task["task_id"])["state"] == "done"  # nothing changed
    assert not _events(stack, task["task_id"], "retried")
    # Named explicitly: the operator wants it sent again.
    r = _post(stack, f"/api/v1/tasks/{task['task_id']}/retry", {"node": "send"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "active" and r.json()["outcome"] is None
    done = stack.wait(task["task_id"])
    assert done["node"]["id"] == "failed"
    assert stack.sim_stats()["messages_created"] == 2
    (ev,) = _events(stack, task["task_id"], "retried")
    assert ev["node_id"] == "failed" and ev["to_node_id"] == "send"
    assert ev["detail"]["by"].startswith("api:anonymous@127.0.0.1")
    assert ev["detail"]["explicit"] is True


def test_retry_after_a_twilio_refusal_sends_again(stack: Stack) -> None:
    task = stack.run("sending-sms", {"Number_to": "+15005550001", "Number_from": FROM, "Body": "x"})
    assert task["node"]["id"] == "api_error" and task["data"]["code"] == 21211
    r = _post(stack, f"/api/v1/tasks/{task['task_id']}/retry", {})
    assert r.status_code == 200, r.text
    assert r.json()["node"]["id"] == "calling_api"
    assert "code" not in r.json()["data"]  # the old error is cleared (kept in the event)
    again = stack.wait(task["task_id"])
    assert again["node"]["id"] == "api_error"
    (ev,) = _events(stack, task["task_id"], "retried")
    assert ev["detail"]["cleared"]["code"] == 21211
    assert stack.sim_stats()["requests"] == 2


def test_cancel_move_and_their_refusals(stack: Stack) -> None:
    t1 = stack.run("waiter", {"n": 1}, state="waiting")
    t2 = stack.run("waiter", {"n": 2}, state="waiting")
    r = _post(stack, f"/api/v1/tasks/{t1['task_id']}/move", {"node": "other"})
    assert r.status_code == 200, r.text
    assert stack.wait(t1["task_id"], state="waiting")["node"]["id"] == "other"
    (ev,) = _events(stack, t1["task_id"], "moved")
    assert (ev["node_id"], ev["to_node_id"]) == ("wait", "other")
    r = _post(stack, f"/api/v1/tasks/{t2['task_id']}/cancel", {"reason": "customer asked"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["state"], body["outcome"], body["node"]["id"]) == ("done", "escalation", "failed")
    assert body["data"]["code"] == "CANCELLED" and body["data"]["message"] == "customer asked"
    (ev,) = _events(stack, t2["task_id"], "cancelled")
    assert ev["detail"]["reason"] == "customer asked"
    refusals = [
        (f"/api/v1/tasks/{t2['task_id']}/cancel", {}, 409, "TASK_FINISHED"),
        (f"/api/v1/tasks/{t2['task_id']}/move", {"node": "wait"}, 409, "TASK_FINISHED"),
        (f"/api/v1/tasks/{t1['task_id']}/move", {}, 422, "MISSING_NODE"),
        (f"/api/v1/tasks/{t1['task_id']}/move", {"node": "nope"}, 422, "INVALID_NODE"),
        (f"/api/v1/tasks/{t1['task_id']}/move", {"node": "ok"}, 422, "INVALID_NODE"),
        (f"/api/v1/tasks/{t1['task_id']}/cancel", {"node": "ok"}, 422, "INVALID_NODE"),
        (f"/api/v1/tasks/{t1['task_id']}/move", {"node": "wait", "x": 1}, 422, "UNKNOWN_FIELDS"),
        ("/api/v1/tasks/000000000000000000000000/retry", {}, 404, "TASK_NOT_FOUND"),
        (f"/api/v1/tasks/{t1['task_id']}/explode", {}, 404, "NOT_FOUND"),
    ]
    before = stack.counts()
    for path, body, status, code in refusals:
        r = _post(stack, path, body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (path, r.text)
    assert stack.counts() == before  # refusals change nothing


def test_a_leased_task_is_not_touched(stack: Stack) -> None:
    import time

    from sqlalchemy import update

    from orchestrator.store.tables import tasks

    t = stack.run("waiter", {"n": 1}, state="waiting")
    with stack.db.write() as conn:  # as an engine holds it while running a step
        conn.execute(
            update(tasks)
            .where(tasks.c.id == t["task_id"])
            .values(state="active", lease_owner="other-engine", lease_until=time.time() + 60)
        )
    for action, body in (("cancel", {}), ("move", {"node": "other"}), ("retry", {})):
        r = _post(stack, f"/api/v1/tasks/{t['task_id']}/{action}", body)
        assert r.status_code == 409 and r.json()["error"]["code"] == "TASK_RUNNING", r.text
    assert stack.task(t["task_id"])["node"]["id"] == "wait"


def test_bulk_cancel_counts_and_pages(stack: Stack) -> None:
    ids = [stack.run("waiter", {"n": i}, state="waiting")["task_id"] for i in range(5)]
    r = _post(stack, "/api/v1/processes/waiter/nodes/wait/cancel", {"limit": 3, "reason": "bulk"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["touched"] == 3 and body["skipped"] == {} and body["next_cursor"]
    r = _post(stack, "/api/v1/processes/waiter/nodes/wait/cancel", {"cursor": body["next_cursor"]})
    assert r.json()["touched"] == 2 and r.json()["next_cursor"] is None
    assert all(stack.task(i)["outcome"] == "escalation" for i in ids)
    # Retry them all from "wait" (bulk, explicit node): back to waiting.
    r = _post(stack, "/api/v1/processes/waiter/nodes/failed/retry", {"node": "wait"})
    assert r.json()["touched"] == 5, r.text
    assert all(stack.wait(i, state="waiting")["node"]["id"] == "wait" for i in ids)
    r = _post(stack, "/api/v1/processes/waiter/nodes/nope/cancel", {})
    assert r.status_code == 404 and r.json()["error"]["code"] == "NODE_NOT_FOUND"


def test_bulk_retry_skips_what_was_sent(stack: Stack) -> None:
    for _ in range(2):
        stack.run("send-then-fail", {"to": "+15551230001"})
    r = _post(stack, "/api/v1/processes/send-then-fail/nodes/failed/retry", {})
    assert r.json()["touched"] == 0 and r.json()["skipped"] == {"ALREADY_SENT": 2}, r.text
    assert stack.sim_stats()["messages_created"] == 2


def test_cli_repair(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    db = stack.settings.database_url
    t = stack.run("waiter", {"n": 1}, state="waiting")
    assert main(["--database-url", db, "task", "move", t["task_id"], "--node", "other"]) == 0
    assert stack.wait(t["task_id"], state="waiting")["node"]["id"] == "other"
    assert main(["--database-url", db, "task", "cancel", "--process", "waiter",
                 "--in-node", "other", "--reason", "cli"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert '"touched": 1' in out
    (ev,) = _events(stack, t["task_id"], "cancelled")
    assert ev["detail"]["by"].startswith("cli:")
    assert main(["--database-url", db, "task", "cancel", t["task_id"]]) == 1
    assert "TASK_FINISHED" in capsys.readouterr().err


def test_a_step_in_flight_is_refused_and_finishes(stack: Stack) -> None:
    """With a real engine: while the SMS create is in flight (Twilio answers slowly) the
    task is leased, every repair is refused, and the send happens exactly once."""
    import time

    stack.sim_config(response_delay=1.0)
    task = stack.sms("+15551230001")
    deadline = time.time() + 5
    # A task placed in calling_api at creation waits there unleased until an engine claims
    # it, and may rightly be cancelled then: the send being in flight is what proves the lease.
    while (
        stack.task(task["task_id"])["node"]["id"] != "calling_api"
        or stack.sim_stats()["messages_created"] != 1
    ):
        assert time.time() < deadline
        time.sleep(0.02)
    for action, body in (("cancel", {}), ("retry", {}), ("move", {"node": "reconcile"})):
        r = _post(stack, f"/api/v1/tasks/{task['task_id']}/{action}", body)
        assert r.status_code == 409 and r.json()["error"]["code"] == "TASK_RUNNING", r.text
    done = stack.wait(task["task_id"])
    assert done["outcome"] == "success"
    assert stack.sim_stats()["messages_created"] == 1
    assert not [e for e in stack.history(task["task_id"]) if e["kind"] in ("cancelled", "moved")]


def test_retry_refuses_a_task_whose_ref_a_newer_task_holds(stack: Stack) -> None:
    first = stack.create({"n": 1}, ref="same", process="waiter")
    stack.wait(first["task_id"], state="waiting")
    r = _post(stack, f"/api/v1/tasks/{first['task_id']}/cancel", {})
    assert r.status_code == 200, r.text
    second = stack.create({"n": 2}, ref="same", process="waiter")  # the ref is free again
    r = _post(stack, f"/api/v1/tasks/{first['task_id']}/retry", {"node": "wait"})
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "REF_CONFLICT"
    assert stack.task(first["task_id"])["state"] == "done"  # nothing changed
    assert stack.task(second["task_id"])["state"] in ("active", "waiting")
