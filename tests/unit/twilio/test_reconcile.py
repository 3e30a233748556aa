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


def test_after_a_restart_messages_sent_before_it_are_looked_up_soon(db_url: str) -> None:
    """Callbacks sent while the server was down are gone; after the restart, messages
    still waiting from before it are fetched within moments, not after
    ORCH_RECONCILE_AFTER (an hour here)."""
    import time

    import httpx
    from servers import run_app

    from orchestrator.config import Settings
    from orchestrator.http.app import create_app
    from orchestrator.servers import free_port
    from orchestrator.twilio.simulator import create_app as create_simulator

    sim = SimulatorConfig(account_sid=ACCOUNT, auth_token=TOKEN, callback_delay=0.3)
    with run_app(create_simulator(sim)) as sim_url:
        port = free_port()
        settings = Settings(
            database_url=db_url,
            public_url=f"http://127.0.0.1:{port}",
            twilio_api_url=sim_url,
            twilio_account_sid=ACCOUNT,
            twilio_auth_token=TOKEN,
            poll_interval=0.05,
            reconcile_after=3600,
            reconcile_after_restart=0.5,
        )
        data = {"Number_from": "+15005550006", "Body": "hi"}
        with (
            run_app(create_app(settings), port=port) as api,
            httpx.Client(base_url=api) as client,
        ):
            ids = []
            for to in ("+15551230001", "+15551233003"):
                r = client.post(
                    "/api/v1/processes/sending-sms/tasks", json={"data": {**data, "Number_to": to}}
                )
                ids.append(r.json()["task_id"])
            for task_id in ids:
                while client.get(f"/api/v1/tasks/{task_id}").json()["state"] != "waiting":
                    time.sleep(0.02)
        # The server is down while the simulator posts the statuses: all of them fail.
        time.sleep(1.0)
        callbacks = httpx.get(f"{sim_url}/_sim/callbacks").json()
        assert callbacks and all(c["result"] != 200 for c in callbacks), callbacks

        restarted = time.monotonic()
        with (
            run_app(create_app(settings), port=port) as api,
            httpx.Client(base_url=api) as client,
        ):
            outcomes = []
            for task_id in ids:
                while (task := client.get(f"/api/v1/tasks/{task_id}").json())["state"] != "done":
                    assert time.monotonic() - restarted < 15, task
                    time.sleep(0.05)
                outcomes.append(task["node"]["id"])
        assert outcomes == ["delivered", "sms_not_delivered"]
        stats = httpx.get(f"{sim_url}/_sim/stats").json()
        assert (stats["messages_created"], stats["requests"]) == (2, 4)  # + two fetches


def test_a_rolling_restart_brings_each_message_forward_once(db_url: str) -> None:
    """Several engines starting one after another: the second start brings forward only
    what was sent since the first one (the rest is due already, or was just fetched)."""
    from orchestrator.config import Settings
    from orchestrator.engine.runtime import Runtime
    from orchestrator.twilio import messages_store as store
    from orchestrator.twilio.reconcile import recheck_after_restart

    rt = Runtime(Settings(database_url=db_url, reconcile_after=3600, reconcile_after_restart=30))

    def track(sid: str, at: float) -> None:
        with rt.db.write() as conn:
            store.track(
                conn,
                sid=sid,
                account_sid=ACCOUNT,
                process_id=1,
                node_id="w",
                status="sent",
                now=at,
                check_at=at + 3600,
            )

    def due(now: float) -> list[str]:
        with rt.db.write() as conn:
            return sorted(m.sid for m in store.claim_due(conn, now, 100, now + 3600))

    track("SM-before", 1000.0)
    assert recheck_after_restart(rt, 2000.0) == 2030.0
    assert due(2030.0) == ["SM-before"]  # looked up 30 s after the start, then pushed on
    track("SM-between", 2100.0)
    assert recheck_after_restart(rt, 2200.0) == 2230.0  # the next engine, 200 s later
    assert due(2230.0) == ["SM-between"]
    assert recheck_after_restart(rt, 9000.0) == 9030.0  # a start long after: all again
    assert due(9030.0) == ["SM-before", "SM-between"]
    rt.db.dispose()
