"""A step's modification targets are looked up (and locked) before anything is written;
a followed step run for one of them may then write another (its own modify_task). The
next modification must see that write, not the record read before it: else its save
meets a newer row (Conflict), and the transaction fails every time it is tried."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from deployed import Deployed, deploy, load_task, put_task, runtime
from test_followed_steps import _callback

from orchestrator.engine import api_call, logics, transitions
from orchestrator.engine.interpreter import Interpreter
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import Conflict
from orchestrator.engine.worker import Worker
from orchestrator.store import callbacks as inbox
from orchestrator.store.records import CallbackRecord, TaskRecord


def _waiting(then: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "wait", "logics": [{"type": "wait_callback"}, *then]}


def _modify(field: str) -> dict[str, Any]:
    return {
        "type": "modify_task",
        "process": "fan",
        "task_id": "{{ " + field + " }}",
        "data": {"from": field},
        "on_error": "oops",
    }


# X modifies Y then Z; Y, released, modifies Z (followed in X's transaction); Z, released,
# finishes.
PROCESS: dict[str, Any] = {
    "slug": "fan",
    "title": "Fan",
    "nodes": {
        "start": {
            "kind": "start",
            "logics": [
                {"type": "condition", "if": [{"param": "at", "fun": "eq", "value": n}], "to": n}
                for n in ("y", "z")
            ]
            + [{"type": "go", "to": "x"}],
        },
        "x": _waiting([_modify("y"), _modify("z"), {"type": "go", "to": "done"}]),
        "y": _waiting([_modify("z"), {"type": "go", "to": "done"}]),
        "z": _waiting([{"type": "set_param", "set": {"seen": "1"}}, {"type": "go", "to": "done"}]),
        "done": {"kind": "success"},
        "oops": {"kind": "escalation"},
    },
}


@pytest.fixture
def world(db_url: str) -> Iterator[tuple[Runtime, Deployed]]:
    rt = runtime(db_url, plugins=[logics.plugin, api_call.plugin])
    rt.prepare()
    try:
        yield rt, deploy(rt, PROCESS)["fan"]
    finally:
        rt.db.dispose()


def _three(rt: Runtime, where: Deployed, x_state: str, **x: Any) -> list[TaskRecord]:
    z = put_task(rt, where, "z", state="waiting")
    y = put_task(rt, where, "y", state="waiting", data={"z": z.id})
    tx = put_task(rt, where, "x", state=x_state, data={"y": y.id, "z": z.id}, **x)
    return [tx, y, z]


def test_a_delivery_whose_followed_steps_write_a_later_target(
    world: tuple[Runtime, Deployed], caplog: pytest.LogCaptureFixture
) -> None:
    rt, where = world
    x, y, z = _three(rt, where, "waiting")
    cb = _callback(rt, where, x, {"go": 1})
    Worker(rt)._deliver(cb)
    # X's step ran in the delivery (not the fallback without followed steps): X is done.
    assert [load_task(rt, t.id).state for t in (x, y, z)] == ["done", "done", "done"]
    assert "conflicted" not in caplog.text


def test_a_step_whose_followed_steps_write_a_later_target(
    world: tuple[Runtime, Deployed], caplog: pytest.LogCaptureFixture
) -> None:
    rt, where = world
    worker = Worker(rt)
    lease = {"lease_owner": worker.owner, "lease_until": time.time() + 30}
    x, y, z = _three(rt, where, "active", entry="resume", **lease)
    interpreter = Interpreter(rt, rt.plugins.step_handlers(rt))
    result = asyncio.run(interpreter.run(x, where.process_id, where.definition))
    worker._commit(x, where.definition, result)
    assert [load_task(rt, t.id).state for t in (x, y, z)] == ["done", "done", "done"]
    assert "conflicted" not in caplog.text


def test_a_conflict_in_a_followed_step_delivers_without_it(
    world: tuple[Runtime, Deployed], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever task a followed step meets changed, the delivery goes through as it did
    before followed steps: the released task written, its step left to the worker. The
    metrics count what was committed, once (store/aftercommit.py): the callback
    applied by both attempts, the followed step not at all (rolled back)."""
    rt, where = world
    z = put_task(rt, where, "z", state="waiting")
    cb = _callback(rt, where, z, {"go": 1})

    def changed(*_args: Any) -> None:
        raise Conflict("another-task")

    monkeypatch.setattr(transitions, "_finished", changed)
    worker = Worker(rt)
    [released] = worker._deliver(cb)
    saved = load_task(rt, z.id)
    assert (released.id, saved.state, saved.node_id, saved.entry) == (
        z.id,
        "active",
        "z",
        "resume",
    )
    sample = rt.metrics.registry.get_sample_value
    assert sample("orchestrator_callbacks_total", {"form": cb.form, "result": "applied"}) == 1
    assert worker.steps == 0
    assert sample("orchestrator_engine_step_duration_seconds_count") == 0


def test_a_callback_whose_delivery_conflicts_does_not_hold_up_the_others(
    world: tuple[Runtime, Deployed], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, where = world
    first, second = (put_task(rt, where, "z", state="waiting") for _ in range(2))
    stuck = _callback(rt, where, first, {"go": 1})
    _callback(rt, where, second, {"go": 1})
    worker = Worker(rt)
    deliver = worker._deliver

    def flaky(cb: CallbackRecord) -> list[TaskRecord]:
        if cb.id == stuck.id:
            raise Conflict(first.id)
        return deliver(cb)

    monkeypatch.setattr(worker, "_deliver", flaky)
    claimed = worker._claim(10)
    assert second.id in {t.id for t in claimed} or load_task(rt, second.id).state == "done"
    assert load_task(rt, first.id).state == "waiting"  # its callback waits for a next poll
    with rt.db.read() as conn:
        assert [c.id for c in inbox.new_callbacks(conn, 10)] == [stuck.id]
