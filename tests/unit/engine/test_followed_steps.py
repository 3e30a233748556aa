"""transitions.follower: the step a delivery's released task takes next runs in the
delivery's own transaction when it only shapes its result, so the task's row is written
once (issue 14), with the same history and outcome as two transactions would leave."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from deployed import Deployed, deploy, history, load_task, put_task, runtime
from sqlalchemy.exc import OperationalError

from orchestrator.engine import api_call, logics, transitions
from orchestrator.engine.deliveries import Histories, deliver
from orchestrator.engine.interpreter import Interpreter
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import Modification, StepResult
from orchestrator.engine.transitions import commit_step, follower
from orchestrator.engine.worker import Worker
from orchestrator.store import callbacks as inbox
from orchestrator.store import tasks as task_store
from orchestrator.store.records import CallbackRecord, TaskRecord

OWNER = "test-worker"


def _waiting(then: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "wait", "logics": [{"type": "wait_callback"}, *then]}


PROCESS: dict[str, Any] = {
    "slug": "followed",
    "title": "Followed",
    "nodes": {
        "start": {
            "kind": "start",
            "logics": [
                {
                    "type": "condition",
                    "if": [{"param": "to", "fun": "eq", "value": "o"}],
                    "to": "outside",
                },
                {
                    "type": "condition",
                    "if": [{"param": "to", "fun": "eq", "value": "m"}],
                    "to": "modifies",
                },
                {"type": "go", "to": "pure"},
            ],
        },
        # Released, it sets a field and finishes: pure, so run in the delivery.
        "pure": _waiting(
            [
                {"type": "set_param", "set": {"seen": "{{ status }}"}},
                {
                    "type": "condition",
                    "if": [{"param": "status", "fun": "eq", "value": "again"}],
                    "to": "pure",
                },
                {"type": "go", "to": "done"},
            ]
        ),
        # Released, it makes a request: run by the worker as usual.
        "outside": _waiting(
            [
                {"type": "api_call", "url": "http://127.0.0.1:9/x", "on_error": "oops"},
                {"type": "go", "to": "done"},
            ]
        ),
        # Released, it modifies a task by id (itself, in the test).
        "modifies": _waiting(
            [
                {
                    "type": "modify_task",
                    "process": "followed",
                    "task_id": "{{ target }}",
                    "data": {"status": "from-modify"},
                    "on_error": "oops",
                },
                {"type": "go", "to": "done"},
            ]
        ),
        "done": {"kind": "success"},
        "oops": {"kind": "escalation"},
    },
}


@pytest.fixture
def world(db_url: str) -> Iterator[tuple[Runtime, Deployed, Interpreter]]:
    rt = runtime(db_url, plugins=[logics.plugin, api_call.plugin])
    rt.prepare()
    try:
        interpreter = Interpreter(rt, rt.plugins.step_handlers(rt))
        yield rt, deploy(rt, PROCESS)["followed"], interpreter
    finally:
        rt.db.dispose()


def _callback(rt: Runtime, where: Deployed, task: TaskRecord, payload: dict[str, Any]) -> Any:
    now = time.time()
    with rt.db.write() as conn:
        cb_id = inbox.insert_callback(
            conn,
            process_id=where.process_id,
            node_id="*",
            form="json",
            payload=payload,
            received_at=now,
            task_id=task.id,
        )
    assert cb_id is not None
    return CallbackRecord(
        cb_id, where.process_id, "*", "json", payload, now, "new", task_id=task.id
    )


def _deliver(rt: Runtime, interpreter: Interpreter, cb: CallbackRecord) -> list[TaskRecord]:
    """As the worker delivers a callback it claimed (Worker._deliver)."""
    now = time.time()
    with rt.db.write() as conn:
        sink: Histories = []
        follow = follower(conn, rt, interpreter.run_now, OWNER, now)
        out = deliver(conn, rt, cb, OWNER, now, sink=sink, follow=follow)
        task_store.add_histories(conn, sink, now)
        return out


def _moves(rt: Runtime, task_id: str) -> list[tuple[str, str | None, str | None]]:
    return [(e["kind"], e["node_id"], e["to_node_id"]) for e in history(rt, task_id)]


def test_a_pure_next_step_runs_in_the_delivery(
    world: tuple[Runtime, Deployed, Interpreter],
) -> None:
    rt, where, interpreter = world
    task = put_task(rt, where, "pure", state="waiting", data={"a": 1})
    assert _deliver(rt, interpreter, _callback(rt, where, task, {"status": "ok"})) == []
    saved = load_task(rt, task.id)
    assert (saved.state, saved.node_id, saved.outcome) == ("done", "done", "success")
    assert saved.data == {"a": 1, "status": "ok", "seen": "ok"}
    assert saved.rev == task.rev + 1  # one write: released and moved on at once
    assert (saved.step, saved.lease_owner) == (task.step + 1, None)
    assert _moves(rt, task.id) == [("callback", "pure", None), ("transition", "pure", "done")]


def test_back_to_its_wait_node_it_waits_again(
    world: tuple[Runtime, Deployed, Interpreter],
) -> None:
    rt, where, interpreter = world
    task = put_task(rt, where, "pure", state="waiting")
    assert _deliver(rt, interpreter, _callback(rt, where, task, {"status": "again"})) == []
    saved = load_task(rt, task.id)
    assert (saved.state, saved.node_id, saved.lease_owner) == ("waiting", "pure", None)
    assert (saved.rev, saved.entry, saved.data["seen"]) == (task.rev + 1, "enter", "again")
    # A second callback is delivered to it there as to any waiting task.
    _deliver(rt, interpreter, _callback(rt, where, task, {"status": "ok"}))
    assert load_task(rt, task.id).state == "done"
    assert [k for k, _n, _t in _moves(rt, task.id)] == [
        "callback",
        "transition",
        "callback",
        "transition",
    ]


def test_a_next_step_reaching_outside_is_left_to_the_worker(
    world: tuple[Runtime, Deployed, Interpreter],
) -> None:
    rt, where, interpreter = world
    task = put_task(rt, where, "outside", state="waiting")
    [released] = _deliver(rt, interpreter, _callback(rt, where, task, {"status": "ok"}))
    saved = load_task(rt, task.id)
    assert (saved.state, saved.node_id, saved.entry) == ("active", "outside", "resume")
    assert saved.lease_owner == OWNER and saved.rev == released.rev == task.rev + 1
    assert _moves(rt, task.id) == [("callback", "outside", None)]


def test_a_followed_step_addressing_a_task_not_written_yet_is_left_to_the_worker(
    world: tuple[Runtime, Deployed, Interpreter],
) -> None:
    """Its lookup would read the row as it was before the release (waiting): the task
    would be released twice and its own write then conflict."""
    rt, where, interpreter = world
    task = put_task(rt, where, "modifies", state="waiting")
    cb = _callback(rt, where, task, {"target": task.id})
    [released] = _deliver(rt, interpreter, cb)
    saved = load_task(rt, task.id)
    assert (saved.state, saved.entry, saved.rev) == ("active", "resume", task.rev + 1)
    assert released.id == task.id
    assert _moves(rt, task.id) == [("callback", "modifies", None)]


def test_a_modification_a_step_sends_takes_its_task_on(
    world: tuple[Runtime, Deployed, Interpreter],
) -> None:
    """A step's commit delivers its modify_task; the modified task's pure step follows in
    the same commit: both tasks' events in order, each row written once."""
    rt, where, interpreter = world
    sender = put_task(rt, where, "outside", lease_owner=OWNER, lease_until=time.time() + 30)
    target = put_task(rt, where, "pure", state="waiting")
    mod = Modification(where.process_id, target.id, {"status": "ok"})
    result = StepResult(data={}, to="done", modifications=[mod])
    now = time.time()
    with rt.db.write() as conn:
        follow = follower(conn, rt, interpreter.run_now, OWNER, now)
        runnable = commit_step(
            conn, rt, sender, where.definition, result, OWNER, now, follow=follow
        )
    assert runnable == []
    saved = load_task(rt, target.id)
    assert (saved.state, saved.rev, saved.data["seen"]) == ("done", target.rev + 1, "ok")
    assert _moves(rt, target.id) == [("callback", "pure", None), ("transition", "pure", "done")]
    assert _moves(rt, sender.id) == [("transition", "outside", "done")]
    assert load_task(rt, sender.id).state == "done"


def test_a_followed_step_that_fails_is_left_out_of_the_delivery(
    world: tuple[Runtime, Deployed, Interpreter], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the followed step's commit does not keep the callback from being
    delivered (nor blame the delivery): the released task is written as it was before
    followed steps, and its step fails where the worker runs it."""
    rt, where, _interpreter = world
    task = put_task(rt, where, "pure", state="waiting")
    cb = _callback(rt, where, task, {"status": "ok"})

    def broken(*_args: Any) -> None:
        raise RuntimeError("a bug in finishing")

    monkeypatch.setattr(transitions, "_finished", broken)
    [released] = Worker(rt)._deliver(cb)
    saved = load_task(rt, task.id)
    assert (saved.state, saved.node_id, saved.entry) == ("active", "pure", "resume")
    assert released.id == task.id and saved.rev == task.rev + 1
    assert _moves(rt, task.id) == [("callback", "pure", None)]
    with rt.db.read() as conn:
        assert inbox.unsettled_for_task(conn, task.id, where.process_id, None) == []


def test_a_database_error_in_a_followed_step_is_the_callers(
    world: tuple[Runtime, Deployed, Interpreter], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock wait timed out or an outage is not a followed step's bug: it goes up as
    before (a batch that meets one starts over job by job), nothing is written."""
    rt, where, _interpreter = world
    task = put_task(rt, where, "pure", state="waiting")
    cb = _callback(rt, where, task, {"status": "ok"})

    def timed_out(*_args: Any) -> None:
        raise OperationalError("UPDATE tasks", {}, Exception("lock timeout"))

    monkeypatch.setattr(transitions, "_finished", timed_out)
    with pytest.raises(OperationalError):
        Worker(rt)._deliver(cb)
    assert load_task(rt, task.id).rev == task.rev
