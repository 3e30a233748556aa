"""A copy with a ref placed in its wait node at creation (issue 14) still gets the
callbacks for its ref that came before it, whenever they were stored and delivered
relative to its creating transaction (engine/early.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from deployed import Deployed, deploy, history, load_task, put_task, runtime

from orchestrator.engine import logics
from orchestrator.engine.deliveries import deliver
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import NewTask, StepResult
from orchestrator.engine.transitions import commit_step
from orchestrator.store import callbacks as inbox
from orchestrator.store import tasks as task_store
from orchestrator.store.records import CallbackRecord, TaskRecord

OWNER = "test-worker"
SID = "SM0123"

SENDER: dict[str, Any] = {
    "slug": "sender",
    "title": "Sender",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "send"}]},
        "send": {"logics": [{"type": "go", "to": "done"}]},
        "done": {"kind": "success"},
        "oops": {"kind": "escalation"},
    },
}
STATUSES: dict[str, Any] = {
    "slug": "statuses",
    "title": "Statuses",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "waiting"}]},
        "waiting": {
            "kind": "wait",
            "time_limit": {"after": "60", "to": "late"},
            "logics": [{"type": "wait_callback"}, {"type": "go", "to": "done"}],
        },
        "done": {"kind": "success"},
        "late": {"kind": "escalation"},
    },
}


@pytest.fixture
def world(db_url: str) -> Iterator[tuple[Runtime, Deployed, Deployed]]:
    rt = runtime(db_url, plugins=[logics.plugin])
    rt.prepare()
    try:
        deployed = deploy(rt, SENDER, STATUSES)
        yield rt, deployed["sender"], deployed["statuses"]
    finally:
        rt.db.dispose()


def store(rt: Runtime, statuses: Deployed, status: str) -> CallbackRecord:
    """A status callback for SID as its receipt stores it (new, its own transaction)."""
    now = time.time()
    with rt.db.write() as conn:
        cb_id = inbox.insert_callback(
            conn,
            process_id=statuses.process_id,
            node_id="waiting",
            form="json",
            payload={"status": status},
            received_at=now,
            ref=SID,
        )
    assert cb_id is not None
    return CallbackRecord(
        cb_id, statuses.process_id, "waiting", "json", {"status": status}, now, "new", ref=SID
    )


def deliver_now(rt: Runtime, cb: CallbackRecord) -> list[TaskRecord]:
    with rt.db.write() as conn:
        return deliver(conn, rt, cb, OWNER, time.time())


def send_with_copy(
    rt: Runtime, sender: Deployed, statuses: Deployed
) -> tuple[TaskRecord, list[TaskRecord]]:
    """The sender's step: it copies itself into ``statuses`` with the sid as ref."""
    task = put_task(rt, sender, "send")
    copy = NewTask(statuses.process_id, statuses.version_id, "start", SID, {"sid": SID}, task.id)
    result = StepResult(data={}, to="done", copies=[copy])
    with rt.db.write() as conn:
        runnable = commit_step(conn, rt, task, sender.definition, result, OWNER, time.time())
    return task, runnable


def the_copy(rt: Runtime, parent_id: str) -> TaskRecord:
    with rt.db.read() as conn:
        [child] = task_store.children(conn, parent_id)
    return child


def kinds(rt: Runtime, task_id: str) -> list[str]:
    return [e["kind"] for e in history(rt, task_id)]


def unsettled(rt: Runtime, statuses: Deployed) -> int:
    with rt.db.read() as conn:
        return len(inbox.unsettled_for_task(conn, "-", statuses.process_id, SID))


def test_without_early_callbacks_the_copy_waits_with_nothing_held(
    world: tuple[Runtime, Deployed, Deployed],
) -> None:
    rt, sender, statuses = world
    parent, runnable = send_with_copy(rt, sender, statuses)
    child = the_copy(rt, parent.id)
    assert runnable == []
    assert (child.node_id, child.state, child.held_callbacks) == ("waiting", "waiting", 0)
    assert kinds(rt, child.id) == ["created", "transition"]
    # Its callback, later, finds it waiting and releases it.
    [released] = deliver_now(rt, store(rt, statuses, "delivered"))
    assert released.id == child.id and load_task(rt, child.id).data["status"] == "delivered"


def test_an_orphan_kept_before_the_copy_is_applied_at_its_creation(
    world: tuple[Runtime, Deployed, Deployed],
) -> None:
    """Stored and delivered before the copy existed: pending, no task (an orphan)."""
    rt, sender, statuses = world
    assert deliver_now(rt, store(rt, statuses, "sent")) == []
    assert unsettled(rt, statuses) == 1
    parent, runnable = send_with_copy(rt, sender, statuses)
    child = the_copy(rt, parent.id)
    assert [t.id for t in runnable] == [child.id]
    assert (child.node_id, child.state, child.entry) == ("waiting", "active", "resume")
    assert child.data == {"sid": SID, "status": "sent"} and child.held_callbacks == 0
    assert kinds(rt, child.id) == ["created", "transition", "callback"]
    assert unsettled(rt, statuses) == 0


def test_a_callback_stored_but_not_delivered_yet_is_applied_once(
    world: tuple[Runtime, Deployed, Deployed],
) -> None:
    """Received (new) before the copy's creation, delivered after it: the creation
    applies it, the delivery then changes nothing."""
    rt, sender, statuses = world
    cb = store(rt, statuses, "sent")
    parent, runnable = send_with_copy(rt, sender, statuses)
    child = the_copy(rt, parent.id)
    assert [t.id for t in runnable] == [child.id] and child.data["status"] == "sent"
    assert deliver_now(rt, cb) == []
    assert kinds(rt, child.id) == ["created", "transition", "callback"]


def test_a_callback_for_another_wait_node_keeps_the_copy_looking(
    world: tuple[Runtime, Deployed, Deployed],
) -> None:
    rt, sender, statuses = world
    cb = store(rt, statuses, "sent")
    with rt.db.write() as conn:
        conn.exec_driver_sql(f"UPDATE callbacks SET node_id = 'elsewhere' WHERE id = {cb.id}")
    parent, runnable = send_with_copy(rt, sender, statuses)
    child = the_copy(rt, parent.id)
    assert runnable == [] and child.state == "waiting" and child.held_callbacks == 1
    assert unsettled(rt, statuses) == 1


def _in_thread(work: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(work())
        except BaseException as exc:  # reported by the test
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


@pytest.mark.parametrize("earlier", [False, True], ids=["first", "ref-used-again"])
def test_a_callback_delivered_while_the_copy_commits_waits_for_it(
    pg_url: str, earlier: bool
) -> None:
    """PostgreSQL: C (the creating step) has looked and not committed; the callback is
    received (R, committed) and delivered (D). D finds no task: without the ref's lock it
    would keep an orphan no look ever sees. It waits for C and finds the copy."""
    rt = runtime(pg_url, plugins=[logics.plugin])
    rt.prepare()
    try:
        deployed = deploy(rt, SENDER, STATUSES)
        sender, statuses = deployed["sender"], deployed["statuses"]
        if earlier:
            # A finished task of the same ref: D finds it first, and must look again
            # under the lock rather than record the callback as late on it.
            put_task(rt, statuses, "done", state="done", outcome="success", ref=SID)
        task = put_task(rt, sender, "send")
        copy = NewTask(statuses.process_id, statuses.version_id, "start", SID, {}, task.id)
        result = StepResult(data={}, to="done", copies=[copy])
        with rt.db.write() as conn:
            assert commit_step(conn, rt, task, sender.definition, result, OWNER, time.time()) == []
            cb = store(rt, statuses, "sent")  # R: another connection, committed
            delivery, out = _in_thread(lambda: deliver_now(rt, cb))
            delivery.join(1.0)
            assert delivery.is_alive()  # D waits for C's lock
        delivery.join(10.0)
        assert not delivery.is_alive()
        child = the_copy(rt, task.id)
        [released] = out[0]
        assert released.id == child.id and child.data == {"status": "sent"}
        assert child.state == "active" and unsettled(rt, statuses) == 0
    finally:
        rt.db.dispose()


def test_a_copy_created_while_a_delivery_keeps_an_orphan_waits_for_it(
    pg_url: str,
) -> None:
    """PostgreSQL: D found no task and holds the ref's lock, not committed; C (the
    creating step) waits for it, then its look sees the orphan D kept."""
    rt = runtime(pg_url, plugins=[logics.plugin])
    rt.prepare()
    try:
        deployed = deploy(rt, SENDER, STATUSES)
        sender, statuses = deployed["sender"], deployed["statuses"]
        cb = store(rt, statuses, "sent")
        with rt.db.write() as conn:
            assert deliver(conn, rt, cb, OWNER, time.time()) == []  # D: an orphan
            creation, out = _in_thread(lambda: send_with_copy(rt, sender, statuses))
            creation.join(1.0)
            assert creation.is_alive()  # C waits for D's lock
        creation.join(10.0)
        assert not creation.is_alive()
        parent, runnable = out[0]
        child = the_copy(rt, parent.id)
        assert [t.id for t in runnable] == [child.id] and child.data["status"] == "sent"
        assert unsettled(rt, statuses) == 0
    finally:
        rt.db.dispose()
