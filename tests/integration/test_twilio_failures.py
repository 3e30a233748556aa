"""Twilio's failure modes end to end: 429 bursts retried then sent once, a call whose
answer never came not placed twice, a lost callback reconciled by the sweep."""

from __future__ import annotations

import time

from stack import ACCOUNT, FROM, TOKEN, running_stack

from orchestrator.twilio.simulator import SimulatorConfig


def test_429_with_retry_after_is_retried_then_sent_once(db_url: str) -> None:
    with running_stack(db_url) as stack:
        stack.sim_config(rate_limit_429=2)  # Retry-After: 1
        started = time.monotonic()
        done = stack.wait(stack.sms("+15551230001")["task_id"])
        assert done["node"]["id"] == "delivered", done
        assert time.monotonic() - started >= 2.0  # both Retry-After waits were honoured
        stats = stack.sim_stats()
        assert stats["messages_created"] == 1
        assert stats["requests"] >= 3
        # The waits were visible in the task's history while they happened.
        retries = [e for e in stack.history(done["task_id"]) if e["kind"] == "twilio_retry"]
        assert [r["detail"]["attempt"] for r in retries] == [1, 2]
        assert all(r["detail"]["retry_in"] == 1.0 for r in retries)  # Retry-After: 1
        assert "429" in retries[0]["detail"]["reason"]


def test_call_without_an_answer_is_never_placed_twice(db_url: str) -> None:
    sim = SimulatorConfig(account_sid=ACCOUNT, auth_token=TOKEN, response_delay=1.5)
    with running_stack(db_url, sim=sim, twilio_timeout=0.5) as stack:
        task = stack.create(
            {"Number_to": "+15551230001", "Number_from": FROM, "Url": "https://example.com/t"},
            process="voice-call",
        )
        done = stack.wait(task["task_id"], timeout=30)
        assert done["data"]["error"] == "TWILIO_OUTCOME_UNKNOWN", done
        time.sleep(0.5)
        assert stack.sim_stats()["calls_created"] == 1


def test_lost_callbacks_are_reconciled_by_the_sweep(db_url: str) -> None:
    sim = SimulatorConfig(account_sid=ACCOUNT, auth_token=TOKEN, lose_callbacks=True)
    with running_stack(
        db_url, sim=sim, reconcile_after=0.5, reconcile_interval=0.2, reconcile_batch=2
    ) as stack:
        ids = [stack.sms(to)["task_id"] for to in ("+15551230001", "+15551233003", "+15551230002")]
        outcomes = [stack.wait(i, timeout=30)["node"]["id"] for i in ids]
        assert outcomes == ["delivered", "sms_not_delivered", "delivered"]
        undelivered = stack.task(ids[1])
        assert str(undelivered["data"]["code"]) == "30003"
        assert stack.sim_stats()["callbacks_sent"] == 0  # every status came from a fetch
        child = stack.child(ids[0])
        fields = [
            e["detail"]["fields"]
            for e in stack.history(child["task_id"])
            if e["kind"] == "callback"
        ]
        assert [f["Reconciled"] for f in fields] == ["fetched"]
        assert stack.sim_stats()["messages_created"] == 3


def test_a_callback_that_came_closes_the_message_for_the_sweep(db_url: str) -> None:
    with running_stack(db_url, reconcile_after=0.3, reconcile_interval=0.1) as stack:
        done = stack.wait(stack.sms("+15551230001")["task_id"])
        assert done["node"]["id"] == "delivered"
        time.sleep(0.8)
        # The sweep never fetched it: only the create went to the simulator.
        assert stack.sim_stats()["requests"] == 1
