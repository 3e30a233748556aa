"""Tasks created by an incoming SMS and by a Twilio action's followers skip a start node
that only says "go" as tasks created through the API do (interpreter.place_at_start):
stored where its step would have taken them, with the history it would have written.
Never into a wait node when they have a ref (a MessageSid, a sent message's sid): a
callback for it may come before the task is committed (see place_at_start)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from deployed import Deployed, deploy, history, load_task, put_task, runtime

from orchestrator.engine.incoming_sms import store_incoming
from orchestrator.engine.replies import deliver_incoming
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import StepResult
from orchestrator.engine.transitions import commit_step
from orchestrator.store import callbacks as inbox
from orchestrator.store import tasks as task_store
from orchestrator.store.records import TaskRecord
from orchestrator.twilio.actions import TwilioActions
from orchestrator.twilio.simulator.incoming import incoming_params

OWNER = "test-worker"
PERSON, OURS = "+15551230001", "+15005550006"


def process(slug: str, target: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A process whose start node only says "go to first"."""
    return {
        "slug": slug,
        "title": slug,
        **extra,
        "nodes": {
            "start": {"kind": "start", "logics": [{"type": "go", "to": "first"}]},
            "first": target,
            "done": {"kind": "success"},
            "oops": {"kind": "escalation"},
        },
    }


WORK = {"logics": [{"type": "go", "to": "done"}]}
WAIT = {
    "kind": "wait",
    "time_limit": {"after": 60, "to": "done"},
    "logics": [{"type": "wait_callback"}, {"type": "go", "to": "done"}],
}


@pytest.fixture
def rt(db_url: str) -> Iterator[Runtime]:
    rt = runtime(db_url)
    rt.prepare()
    try:
        yield rt
    finally:
        rt.db.dispose()


def moves(rt: Runtime, task_id: str) -> list[tuple[str, str | None, str | None]]:
    return [(e["kind"], e["node_id"], e["to_node_id"]) for e in history(rt, task_id)]


def receive(rt: Runtime, where: Deployed, body: str) -> tuple[list[TaskRecord], str]:
    """An incoming message to ``where``'s start node, applied: (runnable tasks, its sid)."""
    params = dict(incoming_params("AC" + "0" * 32, PERSON, OURS, body))
    now = time.time()
    with rt.db.write() as conn:
        cb_id, _answer = store_incoming(
            conn,
            rt,
            where.process_id,
            where.definition.start,
            where.definition,
            params,
            source_ip="test",
            now=now,
        )
    assert cb_id is not None
    with rt.db.write() as conn:
        cb = inbox.get_new(conn, cb_id)
        assert cb is not None
        return deliver_incoming(conn, rt, cb, OWNER, now), params["MessageSid"]


def test_an_incoming_message_starts_its_task_past_a_go_only_start(rt: Runtime) -> None:
    where = deploy(rt, process("inbox", WORK, incoming_sms=True))["inbox"]
    [runnable], sid = receive(rt, where, "hello")
    task = load_task(rt, runnable.id)
    assert (task.ref, task.node_id, task.state, task.step, task.hops, task.entry) == (
        sid,
        "first",
        "active",
        1,
        1,
        "enter",
    )
    assert task.lease_owner == OWNER
    # The same history a task created through the API has.
    assert moves(rt, task.id) == [("created", None, "start"), ("transition", "start", "first")]
    assert history(rt, task.id)[0]["detail"]["by"] == "incoming_sms"


def test_an_incoming_message_into_a_wait_node_takes_its_start_step(rt: Runtime) -> None:
    """Its ref (the MessageSid) keeps it at its start node, as a ref does through the API."""
    where = deploy(rt, process("inbox", WAIT, incoming_sms=True))["inbox"]
    [runnable], _sid = receive(rt, where, "hello")
    task = load_task(rt, runnable.id)
    assert (task.node_id, task.state, task.step, task.hops) == ("start", "active", 0, 0)
    assert moves(rt, task.id) == [("created", None, "start")]


def test_a_twilio_follower_starts_past_a_go_only_start(rt: Runtime) -> None:
    """``follow:`` tasks are copies of the sending step (TwilioActions.follow_task): its
    commit places them as it places any copy; with their ref (the sid) in a wait node
    too, having looked for its callbacks (engine/early.py)."""
    deployed = deploy(
        rt,
        process("sender", WORK),
        process("follows", WORK),
        process("statuses", WAIT),
    )
    where = deployed["sender"]
    task = put_task(rt, where, "first")
    copies = [
        TwilioActions.follow_task(
            (found.process_id, found.version_id, found.definition.start),
            task,
            {"sid": f"SM{i}", "status": "queued"},
        )
        for i, found in enumerate((deployed["follows"], deployed["statuses"]))
    ]
    result = StepResult(data={}, to="done", copies=copies)
    with rt.db.write() as conn:
        commit_step(conn, rt, task, where.definition, result, OWNER, time.time())
    with rt.db.read() as conn:
        children = {c.ref: c for c in task_store.children(conn, task.id)}
    follower, waiter = children["SM0"], children["SM1"]
    assert (follower.node_id, follower.state, follower.step, follower.hops) == (
        "first",
        "active",
        1,
        1,
    )
    assert moves(rt, follower.id) == [
        ("created", None, "start"),
        ("transition", "start", "first"),
    ]
    assert (waiter.node_id, waiter.state, waiter.step) == ("first", "waiting", 1)
    assert waiter.held_callbacks == 0
    assert moves(rt, waiter.id) == [("created", None, "start"), ("transition", "start", "first")]
