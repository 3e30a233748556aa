"""End to end: "Sending SMS" → simulator → status callbacks → "Getting callback" → the
original task's final node. Real uvicorn servers on 127.0.0.1, on every database."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from stack import ACCOUNT, TOKEN, Stack, running_stack

from orchestrator.servers import free_port
from orchestrator.twilio.signature import compute_signature
from orchestrator.twilio.simulator import SimulatorConfig


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url) as s:
        yield s


def _kinds(events: list[dict[str, object]]) -> list[object]:
    return [e["kind"] for e in events]


def test_delivered_sms_ends_in_success(stack: Stack) -> None:
    task = stack.sms("+15551230001", "Hello")
    # Its start node only says "go to calling_api": the task is created there.
    assert task["node"]["id"] == "calling_api"
    done = stack.wait(task["task_id"])
    first = [(e["kind"], e["node_id"], e["to_node_id"]) for e in stack.history(task["task_id"])]
    assert first[:2] == [("created", None, "start"), ("transition", "start", "calling_api")]
    assert done["outcome"] == "success"
    assert done["node"] == {"id": "delivered", "title": "SMS delivered", "kind": "success"}
    assert done["data"]["status"] == "delivered"
    assert done["data"]["sid"].startswith("SM")
    child = stack.wait(stack.child(task["task_id"])["task_id"])
    assert child["ref"] == done["data"]["sid"]
    assert child["node"]["id"] == "final_status"
    child_first = [(e["kind"], e["to_node_id"]) for e in stack.history(child["task_id"])][:2]
    assert child_first == [("created", "start"), ("transition", "waiting_for_callback")]
    assert child["data"]["MessageStatus"] == "delivered"
    statuses = [
        e["detail"]["fields"]["MessageStatus"]
        for e in stack.history(child["task_id"])
        if e["kind"] == "callback"
    ]
    assert statuses == ["sent", "delivered"]
    assert stack.sim_stats()["messages_created"] == 1


@pytest.mark.parametrize(
    ("to", "code", "status"),
    [
        ("+15551233003", 30003, "undelivered"),
        ("+15551233008", 30008, "failed"),
    ],
)
def test_undelivered_and_failed_escalate_with_error_code(
    stack: Stack, to: str, code: int, status: str
) -> None:
    done = stack.wait(stack.sms(to)["task_id"])
    assert done["outcome"] == "escalation"
    assert done["node"]["id"] == "sms_not_delivered"
    assert done["data"]["status"] == status
    assert str(done["data"]["code"]) == str(code)
    assert done["data"]["message"]
    assert done["data"]["sid"].startswith("SM")


def test_twilio_api_error_escalates_with_code_message_and_more_info(stack: Stack) -> None:
    done = stack.wait(stack.sms("+15005550001")["task_id"])
    assert done["node"]["id"] == "api_error"
    assert done["outcome"] == "escalation"
    data = done["data"]
    assert data["code"] == 21211
    assert data["error"] == "INVALID_TO_PHONE_NUMBER_ERROR"
    assert "+15005550001" in data["message"]
    assert data["url_more_info"] == "https://www.twilio.com/docs/errors/21211"
    assert "sid" not in data
    assert stack.sim_stats()["messages_created"] == 0


def test_region_error_has_its_own_name(stack: Stack) -> None:
    done = stack.wait(stack.sms("+15005550003")["task_id"])
    assert done["data"]["code"] == 21408
    assert done["data"]["error"] == "INVALID_REGION_TO_PHONE_NUMBER_ERROR"


def test_connection_refused_escalates(db_url: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with running_stack(db_url, twilio_api_url=closed) as stack:
        done = stack.wait(stack.sms("+15551230001")["task_id"])
    assert done["node"]["id"] == "api_error"
    assert done["data"]["code"] == "TWILIO_CONNECTION_ERROR"
    assert done["data"]["message"]
    assert "url_more_info" not in done["data"]


@pytest.mark.parametrize(
    ("data", "error", "field"),
    [
        ({"Number_to": "+15551230001", "Number_from": "+15005550006"}, "MISSING_INPUT", "Body"),
        ({"Number_from": "+15005550006", "Body": "x"}, "MISSING_INPUT", "Number_to"),
        (
            {"Number_to": "12345", "Number_from": "+15005550006", "Body": "x"},
            "INVALID_INPUT",
            "Number_to",
        ),
        (
            {"Number_to": "+15551230001", "Number_from": "+15005550006", "Body": "x" * 1601},
            "INVALID_INPUT",
            "Body",
        ),
        ({"Number_to": "+15551230001", "Body": "x"}, "MISSING_INPUT", "Number_from"),
    ],
)
def test_invalid_input_escalates_before_any_call(
    stack: Stack, data: dict[str, object], error: str, field: str
) -> None:
    done = stack.wait(stack.create(data)["task_id"])
    assert done["node"]["id"] == "api_error"
    assert (done["data"]["error"], done["data"]["field"]) == (error, field)
    assert stack.sim_stats()["requests"] == 0


def test_lost_callback_is_reconciled_then_times_out(stack: Stack) -> None:
    task = stack.sms("+15551230000", status_timeout=1)
    waiting = stack.wait(task["task_id"], state="waiting")
    assert waiting["node"]["id"] == "waiting_for_status"
    assert waiting["wake_at"] is not None
    done = stack.wait(task["task_id"])
    assert done["node"]["id"] == "callback_timeout"
    assert done["data"]["code"] == "CALLBACK_TIMEOUT"
    kinds = _kinds(stack.history(task["task_id"]))
    assert kinds.count("time_limit") == 1
    assert "reconcile" in [e["to_node_id"] for e in stack.history(task["task_id"])]


@pytest.mark.parametrize("option", ["early_callbacks", "duplicate_callbacks", "reorder_callbacks"])
def test_early_duplicate_and_reordered_callbacks(stack: Stack, option: str) -> None:
    stack.sim_config(**{option: True})
    ids = [stack.sms(f"+1555123000{i}")["task_id"] for i in range(1, 5)]
    for task_id in ids:
        done = stack.wait(task_id)
        assert done["outcome"] == "success", done
        assert done["data"]["status"] == "delivered"
        child = stack.wait(stack.child(task_id)["task_id"])
        assert child["data"]["MessageStatus"] == "delivered"
        applied = [
            e["detail"]["fields"]["MessageStatus"]
            for e in stack.history(child["task_id"])
            if e["kind"] == "callback"
        ]
        # Each status is applied at most once and never after a higher one.
        assert len(applied) == len(set(applied))
        assert applied[-1] == "delivered"
        original_updates = [e for e in stack.history(task_id) if e["kind"] == "callback"]
        assert len(original_updates) == len(applied)
    assert stack.sim_stats()["messages_created"] == len(ids)


def test_reordered_sent_is_kept_in_history_but_not_applied(stack: Stack) -> None:
    stack.sim_config(reorder_callbacks=True, callback_delay=0.2)
    task_id = stack.sms("+15551230001")["task_id"]
    stack.wait(task_id)
    child_id = stack.child(task_id)["task_id"]
    deadline_events = []
    for _ in range(100):
        deadline_events = stack.history(child_id)
        if "callback_late" in _kinds(deadline_events):
            break
        import time

        time.sleep(0.05)
    late = [e for e in deadline_events if e["kind"] == "callback_late"]
    assert late and late[0]["detail"]["fields"]["MessageStatus"] == "sent"
    assert stack.task(child_id)["data"]["MessageStatus"] == "delivered"


def _signed_post(
    stack: Stack,
    url: str,
    params: dict[str, str],
    token: str = TOKEN,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sig = compute_signature(url, params, token)
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": sig, **(headers or {})})


def test_bad_or_missing_signature_is_403_and_changes_nothing(stack: Stack) -> None:
    task_id = stack.sms("+15551230000")["task_id"]  # no callbacks from the simulator
    sid = stack.wait(task_id, state="waiting")["data"]["sid"]
    # Its "Getting callback" copy takes its start step after the send's commit: counted
    # once it waits too (its transition event would otherwise land between the counts).
    stack.wait(stack.child(task_id)["task_id"], state="waiting")
    url = stack.callback_url("getting-callback", "twilio")
    before = stack.counts()
    params = {"AccountSid": ACCOUNT, "MessageSid": sid, "MessageStatus": "delivered"}
    assert _signed_post(stack, url, params, token="wrong-token").status_code == 403
    assert httpx.post(url, data=params).status_code == 403
    tampered = compute_signature(url, params, TOKEN)
    r = httpx.post(
        url, data={**params, "MessageStatus": "failed"}, headers={"X-Twilio-Signature": tampered}
    )
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "INVALID_SIGNATURE"
    assert stack.counts() == before
    assert stack.task(task_id)["state"] == "waiting"
    # The correctly signed one is accepted and moves the task on.
    assert _signed_post(stack, url, params).json()["status"] == "accepted"
    assert stack.wait(task_id)["outcome"] == "success"


def test_repeated_idempotency_token_is_acknowledged_once(stack: Stack) -> None:
    task_id = stack.sms("+15551230000")["task_id"]
    sid = stack.wait(task_id, state="waiting")["data"]["sid"]
    url = stack.callback_url("getting-callback", "twilio")
    params = {"AccountSid": ACCOUNT, "MessageSid": sid, "MessageStatus": "sent"}
    headers = {"I-Twilio-Idempotency-Token": "tok-1"}
    first = _signed_post(stack, url, params, headers=headers)
    again = _signed_post(stack, url, {**params, "MessageStatus": "sending"}, headers=headers)
    same = _signed_post(stack, url, params)
    assert first.json()["status"] == "accepted"
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert same.status_code == 200 and same.json()["status"] == "duplicate"


def test_wrong_hash_and_unknown_process_are_404(stack: Stack) -> None:
    url = stack.callback_url("getting-callback", "twilio")
    base, _hash = url.rsplit("/", 1)
    r = httpx.post(f"{base}/{'0' * 40}", data={"MessageSid": "SMx"})
    assert r.status_code == 404
    conv_id = url.split("/twilio/", 1)[1].split("/", 1)[0]
    r = httpx.post(
        url.replace(f"/twilio/{conv_id}/", "/twilio/999/"),
        data={"MessageSid": "SMx"},
    )
    assert r.status_code == 404


def test_json_and_nvp_callbacks_release_a_waiting_task(stack: Stack) -> None:
    # A "Getting callback" task of our own, waiting for anything.
    task = stack.create(
        {"copy_task_id": "none", "sid": "SMjson"}, ref="SMjson", process="getting-callback"
    )
    stack.wait(task["task_id"], state="waiting")
    json_url = stack.callback_url("getting-callback", "json")
    r = httpx.post(json_url, json={"ref": "SMjson", "MessageStatus": "sent", "extra": 1})
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    # modify_task finds no original: the task escalates, carrying the callback's fields.
    done = stack.wait(task["task_id"])
    assert done["data"]["extra"] == 1
    assert done["data"]["code"] == "not_found_task"

    task2 = stack.create({"copy_task_id": "none"}, ref="SMnvp", process="getting-callback")
    stack.wait(task2["task_id"], state="waiting")
    nvp_url = stack.callback_url("getting-callback", "nvp").replace(
        "{{root.task_id}}", task2["task_id"]
    )
    r = httpx.post(nvp_url, data={"MessageStatus": "delivered", "a": "1"})
    assert r.status_code == 200
    done2 = stack.wait(task2["task_id"])
    assert done2["data"]["a"] == "1"
    events = stack.history(task2["task_id"])
    assert [e["detail"]["form"] for e in events if e["kind"] == "callback"] == ["nvp"]

    assert httpx.post(json_url, json={"no": "id"}).status_code == 422
    assert httpx.post(json_url, content=b"{oops").status_code == 400
    assert httpx.post(nvp_url, json={"a": 1}).status_code == 415


def test_callback_for_a_task_not_yet_created_is_applied_when_it_arrives(stack: Stack) -> None:
    url = stack.callback_url("getting-callback", "json")
    r = httpx.post(url, json={"ref": "SMearly", "MessageStatus": "delivered"})
    assert r.json()["status"] == "accepted"
    task = stack.create({"copy_task_id": "none"}, ref="SMearly", process="getting-callback")
    done = stack.wait(task["task_id"])
    assert done["data"]["MessageStatus"] == "delivered"


def test_many_sms_in_parallel_each_sent_once(db_url: str) -> None:
    sim = SimulatorConfig(
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        callback_delay=0.01,
        duplicate_callbacks=True,
        reorder_callbacks=True,
    )
    with running_stack(db_url, sim=sim) as stack:
        ids = [stack.sms(f"+1555200{i:04d}")["task_id"] for i in range(1, 61)]
        outcomes = [stack.wait(i, timeout=60)["outcome"] for i in ids]
        assert outcomes == ["success"] * len(ids)
        assert stack.sim_stats()["messages_created"] == len(ids)
        for task_id in ids[:10]:
            transitions = [e for e in stack.history(task_id) if e["kind"] == "transition"]
            assert transitions[-1]["to_node_id"] == "delivered"
            assert [e["to_node_id"] for e in transitions].count("calling_api") == 1
