"""Callbacks are verified with the auth token of the account that sent the message:
a token is kept only once Twilio accepted it, and another account's token cannot sign
a callback for someone else's message."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from stack import ACCOUNT, FROM, TOKEN, Stack, running_stack

from orchestrator.engine.runtime import Runtime
from orchestrator.twilio.context import twilio_of
from orchestrator.twilio.signature import compute_signature
from orchestrator.twilio.simulator import SimulatorConfig


def _stored_token(stack: Stack, account: str) -> str | None:
    rt = Runtime(stack.settings, stack.db)
    with stack.db.read() as conn:
        return twilio_of(rt).account_token(conn, account)


def _sms(stack: Stack, to: str, token: str, **extra: Any) -> str:
    data = {"Number_to": to, "Number_from": FROM, "Body": "hi", "AccountSid": ACCOUNT}
    task: dict[str, Any] = stack.create({**data, "AuthToken": token, **extra})
    return str(task["task_id"])


def test_a_rejected_token_never_replaces_the_accounts_good_one(db_url: str) -> None:
    # No server credentials: every task brings its own, as a multi-account user would.
    sim = SimulatorConfig(account_sid=ACCOUNT, auth_token=TOKEN, callback_delay=1.5)
    with running_stack(db_url, sim=sim, twilio_account_sid=None, twilio_auth_token=None) as stack:
        in_flight = [_sms(stack, to, TOKEN) for to in ("+15551230001", "+15551233003")]
        for task_id in in_flight:
            stack.wait(task_id, state="waiting")
        assert _stored_token(stack, ACCOUNT) == TOKEN

        mistyped = stack.wait(_sms(stack, "+15551230002", "a-mistyped-token"))
        assert (mistyped["node"]["id"], str(mistyped["data"]["code"])) == ("api_error", "20003")
        assert _stored_token(stack, ACCOUNT) == TOKEN

        # The messages already sent still have their callbacks accepted and applied.
        outcomes = [stack.wait(t, timeout=20)["node"]["id"] for t in in_flight]
        assert outcomes == ["delivered", "sms_not_delivered"]
        results = [c["result"] for c in httpx.get(f"{stack.sim}/_sim/callbacks").json()]
        assert results and set(results) == {200}, results


def test_a_token_is_not_kept_before_twilio_accepted_it(db_url: str) -> None:
    with running_stack(db_url, twilio_account_sid=None, twilio_auth_token=None) as stack:
        refused = stack.wait(_sms(stack, "+15551230001", "a-mistyped-token"))
        assert str(refused["data"]["code"]) == "20003"
        assert _stored_token(stack, ACCOUNT) is None
        assert stack.wait(_sms(stack, "+15551230001", TOKEN))["node"]["id"] == "delivered"
        assert _stored_token(stack, ACCOUNT) == TOKEN


FAKE_ACCOUNT = "AC" + "f" * 32
FAKE_TOKEN = "token-of-a-made-up-account"


def _keep_token(stack: Stack, account: str, token: str) -> None:
    """As if a task of ``account`` had sent with ``token`` and Twilio had accepted it."""
    from orchestrator.store import kv

    sealed = Runtime(stack.settings, stack.db).vault.encrypt(token)
    with stack.db.write() as conn:
        kv.save_account_token(conn, account, sealed, time.time())


def _forge(url: str, sid: str, status: str) -> httpx.Response:
    params = {"AccountSid": FAKE_ACCOUNT, "MessageSid": sid, "MessageStatus": status}
    params["ErrorCode"] = "30008"
    sig = compute_signature(url, params, FAKE_TOKEN)
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": sig})


def test_another_accounts_token_cannot_sign_a_callback_for_a_victims_message(
    db_url: str,
) -> None:
    with running_stack(db_url) as stack:
        _keep_token(stack, FAKE_ACCOUNT, FAKE_TOKEN)
        victim = stack.sms("+15551230000")["task_id"]  # the simulator sends no callbacks
        sid = stack.wait(victim, state="waiting")["data"]["sid"]
        child = stack.child(victim)["task_id"]
        url = stack.callback_url("getting-callback", "twilio")
        before = stack.counts()

        forged = _forge(url, sid, "failed")
        assert forged.status_code == 403, forged.text
        assert forged.json()["error"]["code"] == "INVALID_SIGNATURE"
        assert stack.counts() == before
        time.sleep(0.3)
        assert stack.task(victim)["state"] == "waiting"
        assert "MessageStatus" not in stack.task(child)["data"]

        # The sender's own token still works.
        params = {"AccountSid": ACCOUNT, "MessageSid": sid, "MessageStatus": "delivered"}
        sig = compute_signature(url, params, TOKEN)
        assert httpx.post(url, data=params, headers={"X-Twilio-Signature": sig}).status_code == 200
        assert stack.wait(victim)["node"]["id"] == "delivered"


def test_an_early_callback_is_checked_again_against_the_sender_when_applied(
    db_url: str,
) -> None:
    """Before the sid is recorded, only the body's account can be checked; once the
    sender is known, the callback must match its token too, or it changes nothing."""
    from orchestrator.twilio import messages_store as message_store

    with running_stack(db_url) as stack:
        _keep_token(stack, FAKE_ACCOUNT, FAKE_TOKEN)
        url = stack.callback_url("getting-callback", "twilio")
        sid = "SM" + "5" * 32
        early = _forge(url, sid, "failed")
        assert early.status_code == 200 and early.json()["status"] == "accepted"
        process_id = stack.client.get("/api/v1/processes/getting-callback").json()["conv_id"]
        with stack.db.write() as conn:  # the victim's send is recorded now
            now = time.time()
            message_store.track(
                conn,
                sid=sid,
                account_sid=ACCOUNT,
                process_id=process_id,
                node_id="waiting_for_callback",
                status="queued",
                now=now,
                check_at=now + 3600,
            )
        task_id = stack.create({"sid": sid}, ref=sid, process="getting-callback")["task_id"]
        deadline = time.time() + 10
        while not any(e["kind"] == "callback_rejected" for e in stack.history(task_id)):
            assert time.time() < deadline, stack.history(task_id)
            time.sleep(0.05)
        rejected = [e for e in stack.history(task_id) if e["kind"] == "callback_rejected"]
        assert rejected[0]["detail"]["fields"]["MessageStatus"] == "failed"
        assert "__signed_request__" not in rejected[0]["detail"]["fields"]
        task = stack.wait(task_id, state="waiting")
        assert "MessageStatus" not in task["data"]

        # A callback the sender signed, arriving early the same way, is applied.
        params = {"AccountSid": ACCOUNT, "MessageSid": sid, "MessageStatus": "delivered"}
        sig = compute_signature(url, params, TOKEN)
        assert httpx.post(url, data=params, headers={"X-Twilio-Signature": sig}).status_code == 200
        done = stack.wait(task_id)
        assert done["data"]["MessageStatus"] == "delivered"
        assert "__signed_request__" not in done["data"]


def test_the_callbacks_of_a_message_sent_here_need_no_query_for_its_sender(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The send noted its sender (twilio/context.py): verifying each status callback
    reads no record of it."""
    from orchestrator.twilio import context
    from orchestrator.twilio import messages_store as message_store

    asked: list[str] = []
    real = message_store.sender

    def sender(conn: Any, sid: str) -> str | None:
        asked.append(sid)
        return real(conn, sid)

    monkeypatch.setattr(context.message_store, "sender", sender)
    with running_stack(db_url) as stack:
        done = stack.wait(_sms(stack, "+15551230009", TOKEN))
        assert done["node"]["id"] == "delivered"
    assert asked == []


def test_a_test_doubles_answer_teaches_no_token(db_url: str) -> None:
    """A logic's base_url off Twilio's domain (a process author's test double) may answer
    2xx to any token: it is not kept as the account's (credentials.answered_by_twilio;
    the send's sender is not noted either, tests/unit/twilio/test_credentials.py)."""
    logic = {
        "type": "twilio",
        "action": "send_sms",
        "params": {
            "To": "{{ to }}",
            "From": FROM,
            "Body": "hi",
            "AccountSid": ACCOUNT,
            "AuthToken": "{{ token }}",
        },
    }
    with running_stack(db_url, twilio_account_sid=None, twilio_auth_token=None) as stack:
        logic["base_url"] = f"{stack.sim}/2010-04-01/Accounts/"
        stack.deploy(
            {
                "slug": "via-double",
                "title": "via-double",
                "nodes": {
                    "start": {"kind": "start", "logics": [{"type": "go", "to": "send"}]},
                    "send": {"on_error": "failed", "logics": [logic, {"type": "go", "to": "ok"}]},
                    "ok": {"kind": "success"},
                    "failed": {"kind": "escalation"},
                },
            }
        )
        done = stack.run("via-double", {"to": "+15551230001", "token": TOKEN})
        assert done["outcome"] == "success", done
        assert _stored_token(stack, ACCOUNT) is None
