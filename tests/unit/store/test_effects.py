"""Exactly-once Twilio sends: an answer that never came, or a worker that died between
the call and its commit, is resolved by looking the message up, never by sending again."""

from __future__ import annotations

import json
import time

import httpx
from sqlalchemy import update
from stack import ACCOUNT, FROM, TOKEN, running_stack

from orchestrator.store import effects as effect_store
from orchestrator.store.tables import tasks
from orchestrator.twilio.simulator import SimulatorConfig


def test_read_timeout_adopts_the_message_instead_of_resending(db_url: str) -> None:
    sim = SimulatorConfig(
        account_sid=ACCOUNT, auth_token=TOKEN, callback_delay=0.02, response_delay=1.5
    )
    with running_stack(db_url, sim=sim, twilio_timeout=0.5) as stack:
        done = stack.wait(stack.sms("+15551230001")["task_id"], timeout=30)
        assert done["outcome"] == "success", done
        assert stack.sim_stats()["messages_created"] == 1
        [message] = httpx.get(f"{stack.sim}/_sim/messages").json()
        assert done["data"]["sid"] == message["sid"]
        # The recovery is visible: the history names the adopted message and why.
        [adopted] = [e for e in stack.history(done["task_id"]) if e["kind"] == "twilio_adopted"]
        assert adopted["detail"]["sid"] == message["sid"]
        assert adopted["detail"]["why"].startswith("no answer to the create")
        assert "same To, From and Body" in adopted["detail"]["found_by"]


def test_unknown_outcome_without_a_match_escalates_and_never_resends(db_url: str) -> None:
    sim = SimulatorConfig(account_sid=ACCOUNT, auth_token=TOKEN, callback_delay=0.02)
    with running_stack(db_url, sim=sim, twilio_timeout=2.0) as stack:
        # A task whose Twilio create was begun by a worker that then died: the effect is
        # recorded as started, the task is runnable again in the node that sends.
        task = stack.create(
            {"Number_to": "+15551230001", "Number_from": FROM, "Body": "x"}, process="sending-sms"
        )
        stack.wait(task["task_id"])  # let the first run finish normally...
        assert stack.sim_stats()["messages_created"] == 1
        # ...then replay the crash: same task, back in calling_api, effect "started".
        with stack.db.write() as conn:
            conn.execute(
                update(tasks)
                .where(tasks.c.id == task["task_id"])
                .values(
                    node_id="calling_api",
                    state="active",
                    outcome=None,
                    finished_at=None,
                    entry="enter",
                    step=99,
                    lease_owner=None,
                    lease_until=None,
                    data=json.dumps(
                        {"Number_to": "+15551230002", "Number_from": FROM, "Body": "y"}
                    ),
                )
            )
            # begun an hour ago: whatever that attempt waited for can no longer come
            effect_store.begin(
                conn, task["task_id"], 99, 0, "twilio.create_message", {}, time.time() - 3600
            )
        stack.client.post("/api/v1/processes/sending-sms/tasks", json={"data": {}})  # wake
        deadline = time.time() + 20
        while True:
            view = stack.task(task["task_id"])
            if view["state"] == "done":
                break
            assert time.time() < deadline, (view["node"], view["state"], view["data"])
            time.sleep(0.05)
        assert view["node"]["id"] == "api_error"
        assert view["data"]["code"] == "TWILIO_OUTCOME_UNKNOWN"
        assert stack.sim_stats()["messages_created"] == 1  # nothing was sent again


def test_started_effect_with_a_matching_message_is_adopted(db_url: str) -> None:
    with running_stack(db_url) as stack:
        # The worker sent this message, then died before committing.
        r = httpx.post(
            f"{stack.sim}/2010-04-01/Accounts/{ACCOUNT}/Messages.json",
            auth=(ACCOUNT, TOKEN),
            data={"To": "+15551230003", "From": FROM, "Body": "adopt me"},
        )
        assert r.status_code == 201
        sid = r.json()["sid"]
        task = stack.create(
            {"Number_to": "+15551230009", "Number_from": FROM, "Body": "z"},
            process="getting-callback",
        )  # any process: we rewrite it below...
        # ...once its own first step is over: a step still in flight would commit over
        # the rewrite (the test bypasses the engine's revision check).
        stack.wait(task["task_id"], state="waiting")
        with stack.db.write() as conn:
            sending = conn.execute(tasks.select().where(tasks.c.id == task["task_id"])).first()
            assert sending is not None
        from orchestrator.store import processes as process_store

        with stack.db.write() as conn:
            proc = process_store.get_process(conn, "sending-sms")
            assert proc is not None
            conn.execute(
                update(tasks)
                .where(tasks.c.id == task["task_id"])
                .values(
                    process_id=proc.id,
                    version_id=proc.version_id,
                    node_id="calling_api",
                    state="active",
                    entry="enter",
                    step=7,
                    lease_owner=None,
                    lease_until=None,
                    data=json.dumps(
                        {"Number_to": "+15551230003", "Number_from": FROM, "Body": "adopt me"}
                    ),
                )
            )
            # Begun two days ago: the message is dated later, so the lookup must not be
            # limited to the day the send began (it once was, and failed after midnight).
            effect_store.begin(
                conn, task["task_id"], 7, 0, "twilio.create_message", {}, time.time() - 2 * 86400
            )
        stack.client.post("/api/v1/processes/sending-sms/tasks", json={"data": {}})  # wake
        # Adopted: the task carries the existing message's sid and waits for its status
        # (this hand-made message has no StatusCallback, so none will come).
        waiting = stack.wait(task["task_id"], state="waiting", timeout=20)
        assert waiting["node"]["id"] == "waiting_for_status"
        assert waiting["data"]["sid"] == sid
        assert stack.sim_stats()["messages_created"] == 1
        [adopted] = [e for e in stack.history(task["task_id"]) if e["kind"] == "twilio_adopted"]
        assert adopted["detail"]["sid"] == sid
        assert adopted["detail"]["why"] == "an earlier attempt stopped unanswered"


def test_a_send_begun_moments_ago_is_left_to_finish(db_url: str) -> None:
    """Another worker may still be waiting for Twilio's answer: the step waits, keeping
    its lease, instead of declaring the outcome unknown."""
    with running_stack(db_url) as stack:
        task = stack.create(
            {"Number_to": "+15551230001", "Number_from": FROM, "Body": "x"}, process="sending-sms"
        )
        stack.wait(task["task_id"])
        with stack.db.write() as conn:
            conn.execute(
                update(tasks)
                .where(tasks.c.id == task["task_id"])
                .values(
                    node_id="calling_api",
                    state="active",
                    outcome=None,
                    finished_at=None,
                    entry="enter",
                    step=50,
                    lease_owner=None,
                    lease_until=None,
                )
            )
            effect_store.begin(
                conn, task["task_id"], 50, 0, "twilio.create_message", {}, time.time()
            )
        stack.client.post("/api/v1/processes/sending-sms/tasks", json={"data": {}})  # wake
        time.sleep(1.5)
        with stack.db.read() as conn:
            row = conn.execute(tasks.select().where(tasks.c.id == task["task_id"])).one()
        assert (row.node_id, row.state) == ("calling_api", "active")
        assert row.lease_until is not None and row.lease_until > time.time() + 5
        assert stack.sim_stats()["messages_created"] == 1
