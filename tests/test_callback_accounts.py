"""Callbacks are verified with the auth token of the account that sent the message:
a token is kept only once Twilio accepted it, and another account's token cannot sign
a callback for someone else's message."""

from __future__ import annotations

from typing import Any

import httpx
from stack import ACCOUNT, FROM, TOKEN, Stack, running_stack

from orchestrator.engine.runtime import Runtime
from orchestrator.twilio.simulator import SimulatorConfig


def _stored_token(stack: Stack, account: str) -> str | None:
    rt = Runtime(stack.settings, stack.db)
    with stack.db.read() as conn:
        return rt.account_token(conn, account)


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
