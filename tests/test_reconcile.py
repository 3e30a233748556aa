"""Reconciling with Twilio when status callbacks were lost: the wait node's own
reconcile step, and the sweep (also right after a restart)."""

from __future__ import annotations

from stack import ACCOUNT, TOKEN, running_stack

from orchestrator.twilio.simulator import SimulatorConfig


def test_the_reconcile_step_fetches_the_status_twilio_has(db_url: str) -> None:
    """The simulator moves each message to its final status but its callbacks are lost:
    only a real fetch at the wait's time limit can tell delivered from undelivered."""
    sim = SimulatorConfig(account_sid=ACCOUNT, auth_token=TOKEN, lose_callbacks=True)
    with running_stack(db_url, sim=sim, reconcile_after=0) as stack:
        ids = [
            stack.sms(to, status_timeout=1)["task_id"] for to in ("+15551230001", "+15551233003")
        ]
        delivered, undelivered = (stack.wait(i, timeout=30) for i in ids)
        assert delivered["node"]["id"] == "delivered", delivered
        assert delivered["data"]["status"] == "delivered"
        assert undelivered["node"]["id"] == "sms_not_delivered", undelivered
        assert str(undelivered["data"]["code"]) == "30003"
        for task_id in ids:
            steps = [e["to_node_id"] for e in stack.history(task_id) if e["kind"] == "transition"]
            assert "reconcile" in steps
        stats = stack.sim_stats()
        assert stats["callbacks_sent"] == 0
        assert stats["requests"] == 4  # two creates, two fetches
