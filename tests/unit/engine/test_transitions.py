"""transitions: a step's result and a callback, each applied in one transaction."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from deployed import Deployed, deploy, history, load_task, put_task, runtime

from orchestrator.engine import logics
from orchestrator.engine.attempts import for_attempt
from orchestrator.engine.deliveries import deliver
from orchestrator.engine.plugins import CallbackForm, Plugin
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import Conflict, NewTask, StepResult
from orchestrator.engine.transitions import commit_step
from orchestrator.store import callbacks as inbox
from orchestrator.store import tasks as task_store
from orchestrator.store.records import CallbackRecord, Event, TaskRecord

OWNER = "test-worker"

PROCESS: dict[str, Any] = {
    "slug": "moves",
    "title": "Moves",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "work"}]},
        "work": {"logics": [{"type": "go", "to": "waiting"}]},
        "waiting": {
            "kind": "wait",
            "logics": [{"type": "wait_callback"}, {"type": "go", "to": "done"}],
        },
        "done": {"kind": "success"},
        "oops": {"kind": "escalation"},
    },
}


class OnlyForward(CallbackForm):
    """A form whose ``step`` never goes backwards (as a provider's status)."""

    def advances(self, payload: dict[str, Any], data: dict[str, Any]) -> bool:
        return int(payload.get("step", 0)) > int(data.get("step", 0))


def forward_forms(rt: Runtime) -> Mapping[str, CallbackForm]:
    return {"forward": OnlyForward()}


FORWARD = Plugin[Runtime]("forward", forms=forward_forms)


@pytest.fixture
def world(db_url: str) -> Iterator[tuple[Runtime, Deployed]]:
    rt = runtime(db_url, plugins=[logics.plugin, FORWARD])
    rt.prepare()
    try:
        yield rt, deploy(rt, PROCESS)["moves"]
    finally:
        rt.db.dispose()


def commit(rt: Runtime, where: Deployed, task: TaskRecord, result: StepResult) -> list[TaskRecord]:
    with rt.db.write() as conn:
        return commit_step(conn, rt, task, where.definition, result, OWNER, time.time())


def kinds(rt: Runtime, task_id: str) -> list[str]:
    return [e["kind"] for e in history(rt, task_id)]


def test_a_step_writes_the_task_and_its_events(world: tuple[Runtime, Deployed]) -> None:
    rt, where = world
    task = put_task(rt, where, "start")
    rev = task.rev
    result = StepResult(data={"a": 1}, to="work", events=[Event("note", "start", None, {"n": 1})])
    runnable = commit(rt, where, task, result)
    saved = load_task(rt, task.id)
    assert (saved.node_id, saved.state, saved.step, saved.data) == ("work", "active", 1, {"a": 1})
    assert saved.rev == rev + 1
    assert [t.id for t in runnable] == [task.id]  # still active: the worker runs it next
    events = history(rt, task.id)
    assert [(e["kind"], e["node_id"], e["to_node_id"]) for e in events] == [
        ("note", "start", None),
        ("transition", "start", "work"),
    ]
    assert events[0]["detail"] == {"n": 1}


def test_a_final_node_finishes_the_task(world: tuple[Runtime, Deployed]) -> None:
    rt, where = world
    task = put_task(rt, where, "work", lease_owner=OWNER, lease_until=time.time() + 30)
    assert commit(rt, where, task, StepResult(data={}, to="done")) == []
    saved = load_task(rt, task.id)
    assert (saved.state, saved.outcome, saved.lease_owner) == ("done", "success", None)
    assert saved.finished_at is not None


def test_a_finished_task_is_timed_once_its_commit_is_kept(
    world: tuple[Runtime, Deployed],
) -> None:
    rt, where = world
    task = put_task(rt, where, "work", lease_owner=OWNER, lease_until=time.time() + 30)
    timed = ("orchestrator_task_duration_seconds_count", {"process": "moves", "outcome": "success"})
    with pytest.raises(ValueError), rt.db.write() as conn:
        mine, result = for_attempt(task, StepResult(data={}, to="done"))
        commit_step(conn, rt, mine, where.definition, result, OWNER, time.time())
        raise ValueError("rolled back: its attempt runs again")
    assert not rt.metrics.registry.get_sample_value(*timed)
    commit(rt, where, task, StepResult(data={}, to="done"))
    assert rt.metrics.registry.get_sample_value(*timed) == 1


def test_a_stale_rev_is_a_conflict_and_writes_nothing(world: tuple[Runtime, Deployed]) -> None:
    rt, where = world
    task = put_task(rt, where, "start")
    stale = load_task(rt, task.id)  # read before the other worker's step
    commit(rt, where, task, StepResult(data={"by": "first"}, to="work"))
    child = NewTask(where.process_id, where.version_id, "start", None, {}, stale.id)
    lost = StepResult(data={"by": "second"}, to="work", copies=[child])
    lost.events.append(Event("note", "start", None))
    with pytest.raises(Conflict):
        commit(rt, where, stale, lost)
    saved = load_task(rt, task.id)
    assert saved.data == {"by": "first"} and saved.step == 1
    assert kinds(rt, task.id) == ["transition"]  # none of the lost step's events
    with rt.db.read() as conn:
        assert task_store.children(conn, task.id) == []  # nor its copy


def test_copies_are_created_leased_to_the_worker(world: tuple[Runtime, Deployed]) -> None:
    rt, where = world
    task = put_task(rt, where, "work", generation=2)
    copy = NewTask(where.process_id, where.version_id, "work", "ref-1", {"c": 1}, task.id)
    runnable = commit(rt, where, task, StepResult(data={}, to="waiting", copies=[copy]))
    with rt.db.read() as conn:
        [child] = task_store.children(conn, task.id)
    assert (child.node_id, child.state, child.ref, child.data) == (
        "work",
        "active",
        "ref-1",
        {"c": 1},
    )
    assert child.lease_owner == OWNER and child.root_id == task.id and child.generation == 3
    assert [t.id for t in runnable] == [child.id]  # the parent waits now
    [created] = history(rt, child.id)
    assert created["kind"] == "created"
    assert created["detail"] == {"by": "copy_task", "parent_task_id": task.id}
    assert load_task(rt, task.id).state == "waiting"


def store_callback(
    rt: Runtime, where: Deployed, task: TaskRecord, payload: dict[str, Any], form: str = "json"
) -> CallbackRecord:
    now = time.time()
    with rt.db.write() as conn:
        cb_id = inbox.insert_callback(
            conn,
            process_id=where.process_id,
            node_id="waiting",
            form=form,
            payload=payload,
            received_at=now,
            task_id=task.id,
        )
    assert cb_id is not None
    return CallbackRecord(
        cb_id, where.process_id, "waiting", form, payload, now, "new", task_id=task.id
    )


def apply(rt: Runtime, cb: CallbackRecord) -> list[TaskRecord]:
    with rt.db.write() as conn:
        return deliver(conn, rt, cb, OWNER, time.time())


def pending(rt: Runtime, task_id: str) -> int:
    """How many callbacks wait in the inbox for a task to reach its wait node."""
    with rt.db.read() as conn:
        return len(inbox.unsettled_for_task(conn, task_id, 0, None))


def test_a_callback_releases_a_waiting_task(world: tuple[Runtime, Deployed]) -> None:
    rt, where = world
    task = put_task(rt, where, "waiting", state="waiting", data={"a": 1})
    [released] = apply(rt, store_callback(rt, where, task, {"status": "ok"}))
    saved = load_task(rt, task.id)
    assert released.id == task.id
    assert (saved.state, saved.entry, saved.lease_owner) == ("active", "resume", OWNER)
    assert saved.data == {"a": 1, "status": "ok"}
    assert kinds(rt, task.id) == ["callback"]


def test_a_callback_that_does_not_advance_is_only_recorded(
    world: tuple[Runtime, Deployed],
) -> None:
    rt, where = world
    task = put_task(rt, where, "waiting", state="waiting", data={"step": 2})
    assert apply(rt, store_callback(rt, where, task, {"step": 1}, form="forward")) == []
    saved = load_task(rt, task.id)
    assert (saved.state, saved.data) == ("waiting", {"step": 2})
    [ignored] = history(rt, task.id)
    assert ignored["kind"] == "callback_ignored"
    assert ignored["detail"]["reason"] == "status does not advance"
    [released] = apply(rt, store_callback(rt, where, task, {"step": 3}, form="forward"))
    assert load_task(rt, released.id).data == {"step": 3}


def test_a_callback_for_a_finished_task_is_kept_as_late(world: tuple[Runtime, Deployed]) -> None:
    rt, where = world
    task = put_task(rt, where, "done", state="done", outcome="success")
    assert apply(rt, store_callback(rt, where, task, {"status": "ok"})) == []
    assert kinds(rt, task.id) == ["callback_late"]
    assert load_task(rt, task.id).data == {}


def test_an_early_callback_waits_and_is_applied_on_entering(
    world: tuple[Runtime, Deployed],
) -> None:
    rt, where = world
    task = put_task(rt, where, "work")
    assert apply(rt, store_callback(rt, where, task, {"status": "early"})) == []
    assert pending(rt, task.id) == 1  # not waiting yet: kept
    [runnable] = commit(rt, where, load_task(rt, task.id), StepResult(data={}, to="waiting"))
    saved = load_task(rt, task.id)
    assert runnable.id == task.id and saved.state == "active" and saved.entry == "resume"
    assert saved.data == {"status": "early"}
    assert kinds(rt, task.id) == ["transition", "callback"]
    assert pending(rt, task.id) == 0


def test_an_attempt_rolled_back_leaves_the_step_as_it_was(
    world: tuple[Runtime, Deployed],
) -> None:
    """A commit may run again (PostgreSQL: a deadlock, a group-commit batch run again job
    by job). The worker gives each attempt shallow copies (attempts.for_attempt): that is
    enough only while commit_step changes attributes, never the dicts and lists its task
    and result hold, even where it merges a callback into the task's data."""
    rt, where = world
    task = put_task(rt, where, "work", data={"keep": {"nested": [1, {"x": 2}]}})
    apply(rt, store_callback(rt, where, task, {"status": "early", "keep": {"more": 1}}))
    task = load_task(rt, task.id)
    child = NewTask(where.process_id, where.version_id, "work", None, {"c": [1]}, task.id)
    result = StepResult(
        data={"keep": {"nested": [1, {"x": 2}]}, "list": [{"y": 1}]},
        to="waiting",
        events=[Event("note", "work", None, {"n": [1]})],
        copies=[child],
    )
    task_before, result_before = copy.deepcopy(task), copy.deepcopy(result)

    with pytest.raises(RuntimeError), rt.db.write() as conn:
        mine, outcome = for_attempt(task, result)
        commit_step(conn, rt, mine, where.definition, outcome, OWNER, time.time())
        raise RuntimeError("rolled back, to run again")
    assert (task, task.stored) == (task_before, task_before.stored)
    assert result == result_before

    [released, _child] = commit(rt, where, *for_attempt(task, result))
    assert (task, result) == (task_before, result_before)
    saved = load_task(rt, task.id)
    assert released.id == task.id and saved.entry == "resume"
    assert saved.data == {"keep": {"more": 1}, "list": [{"y": 1}], "status": "early"}
    assert kinds(rt, task.id) == ["note", "transition", "callback"]


def test_a_callback_held_while_the_step_runs_is_applied_on_entering(
    world: tuple[Runtime, Deployed],
) -> None:
    """The step read its task before the callback was kept for it: the flag the delivery
    set is read back by the step's save, so entering the wait node still finds it."""
    rt, where = world
    task = put_task(rt, where, "work")
    running = load_task(rt, task.id)  # as the claim read it
    assert running.held_callbacks == 0
    assert apply(rt, store_callback(rt, where, task, {"status": "early"})) == []
    assert load_task(rt, task.id).held_callbacks == 1
    [runnable] = commit(rt, where, running, StepResult(data={}, to="waiting"))
    assert runnable.id == task.id and runnable.state == "active"
    assert load_task(rt, task.id).data == {"status": "early"}
    assert pending(rt, task.id) == 0


def test_a_wait_node_that_finds_nothing_held_clears_the_flag(
    world: tuple[Runtime, Deployed],
) -> None:
    rt, where = world
    task = put_task(rt, where, "work", ref="R1")
    assert task.held_callbacks == 1  # a callback for its ref may have come first
    assert commit(rt, where, task, StepResult(data={}, to="waiting")) == []
    saved = load_task(rt, task.id)
    assert saved.state == "waiting" and saved.held_callbacks == 0
    plain = put_task(rt, where, "work")
    assert plain.held_callbacks == 0  # no ref, nothing delivered: nothing to look for
    assert commit(rt, where, plain, StepResult(data={}, to="waiting")) == []


def test_a_callback_for_a_ref_before_its_task_exists_is_applied_on_entering(
    world: tuple[Runtime, Deployed],
) -> None:
    rt, where = world
    now = time.time()
    with rt.db.write() as conn:
        cb_id = inbox.insert_callback(
            conn,
            process_id=where.process_id,
            node_id="waiting",
            form="json",
            payload={"status": "first"},
            received_at=now,
            ref="R2",
        )
    assert cb_id is not None
    cb = CallbackRecord(
        cb_id, where.process_id, "waiting", "json", {"status": "first"}, now, "new", ref="R2"
    )
    assert apply(rt, cb) == []  # no task yet: an orphan, pending
    task = put_task(rt, where, "work", ref="R2")
    [runnable] = commit(rt, where, task, StepResult(data={}, to="waiting"))
    assert runnable.id == task.id
    assert load_task(rt, task.id).data == {"status": "first"}


def test_a_callback_held_for_another_wait_node_keeps_the_flag(
    world: tuple[Runtime, Deployed],
) -> None:
    rt, where = world
    task = put_task(rt, where, "work")
    cb = store_callback(rt, where, task, {"status": "later"})
    with rt.db.write() as conn:
        conn.exec_driver_sql(f"UPDATE callbacks SET node_id = 'elsewhere' WHERE id = {cb.id}")
    cb.node_id = "elsewhere"
    assert apply(rt, cb) == []
    assert commit(rt, where, load_task(rt, task.id), StepResult(data={}, to="waiting")) == []
    saved = load_task(rt, task.id)
    assert saved.state == "waiting" and saved.held_callbacks == 1
    assert pending(rt, task.id) == 1


def test_the_only_held_callback_applied_clears_the_flag_with_the_release(
    world: tuple[Runtime, Deployed],
) -> None:
    rt, where = world
    task = put_task(rt, where, "work")
    assert apply(rt, store_callback(rt, where, task, {"status": "early"})) == []
    [runnable] = commit(rt, where, load_task(rt, task.id), StepResult(data={}, to="waiting"))
    saved = load_task(rt, task.id)
    assert saved.entry == "resume" and saved.held_callbacks == 0


# A start node that only says "go" (issue 14): copies are stored where its step would
# have taken them, in the step that copies them.
STATUSES: dict[str, Any] = {
    "slug": "statuses",
    "title": "Statuses",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "waiting"}]},
        "waiting": {
            "kind": "wait",
            "time_limit": {"after": "{{ t | default(60) }}", "to": "late"},
            "logics": [{"type": "wait_callback"}, {"type": "go", "to": "done"}],
        },
        "done": {"kind": "success"},
        "late": {"kind": "escalation"},
    },
}


def placed(rt: Runtime, task_id: str) -> list[tuple[str, str | None, str | None]]:
    return [(e["kind"], e["node_id"], e["to_node_id"]) for e in history(rt, task_id)]


def test_a_copy_skips_a_start_node_that_only_goes(world: tuple[Runtime, Deployed]) -> None:
    rt, where = world
    task = put_task(rt, where, "work")
    copy = NewTask(where.process_id, where.version_id, "start", None, {"c": 1}, task.id)
    runnable = commit(rt, where, task, StepResult(data={}, to="waiting", copies=[copy]))
    with rt.db.read() as conn:
        [child] = task_store.children(conn, task.id)
    assert [t.id for t in runnable] == [child.id]
    assert (child.node_id, child.state, child.step, child.hops, child.entry) == (
        "work",
        "active",
        1,
        1,
        "enter",
    )
    assert child.lease_owner == OWNER
    assert placed(rt, child.id) == [("created", None, "start"), ("transition", "start", "work")]


def test_a_copy_enters_a_wait_target_as_its_step_would(world: tuple[Runtime, Deployed]) -> None:
    """Its time limit is rendered from its data. One with a ref too: it looked for
    callbacks that came before it (none), and is stored with nothing held (engine/early.py,
    tests/unit/engine/test_early_callbacks.py)."""
    rt, where = world
    statuses = deploy(rt, STATUSES)["statuses"]
    task = put_task(rt, where, "work")
    now = time.time()
    quiet = NewTask(statuses.process_id, statuses.version_id, "start", None, {"t": 500}, task.id)
    refd = NewTask(statuses.process_id, statuses.version_id, "start", "SM1", {"t": 5}, task.id)
    result = StepResult(data={}, to="waiting", copies=[quiet, refd])
    runnable = commit(rt, where, task, result)
    with rt.db.read() as conn:
        children = {c.ref: c for c in task_store.children(conn, task.id)}
    waiting, refd_waiting = children[None], children["SM1"]
    assert runnable == []
    assert (refd_waiting.node_id, refd_waiting.state, refd_waiting.step) == (
        "waiting",
        "waiting",
        1,
    )
    assert refd_waiting.held_callbacks == 0
    assert refd_waiting.wake_at is not None and now + 4 < refd_waiting.wake_at < now + 65
    assert (waiting.state, waiting.lease_owner, waiting.step, waiting.hops) == (
        "waiting",
        None,
        1,
        0,
    )
    assert waiting.node_id == "waiting" and waiting.entry == "enter"
    assert waiting.wake_at is not None and now + 499 < waiting.wake_at < now + 560
    assert placed(rt, waiting.id) == [
        ("created", None, "start"),
        ("transition", "start", "waiting"),
    ]


def test_a_copy_whose_time_limit_fails_starts_at_its_start_node(
    world: tuple[Runtime, Deployed],
) -> None:
    """Its own step then fails as before (BAD_TIME_LIMIT, on the error path)."""
    rt, where = world
    statuses = deploy(rt, STATUSES)["statuses"]
    task = put_task(rt, where, "work")
    bad = NewTask(statuses.process_id, statuses.version_id, "start", None, {"t": "x"}, task.id)
    [child] = commit(rt, where, task, StepResult(data={}, to="waiting", copies=[bad]))
    assert (child.node_id, child.state, child.step) == ("start", "active", 0)
    assert kinds(rt, child.id) == ["created"]
