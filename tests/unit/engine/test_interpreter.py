"""The interpreter: one node of one task → a StepResult, with no writes of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from deployed import Deployed, deploy, put_task, runtime

from orchestrator.engine import logics
from orchestrator.engine.definition import Logic
from orchestrator.engine.interpreter import Interpreter
from orchestrator.engine.plugins import StepHandler
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import LogicFailure, StepDeferred, StepResult
from orchestrator.store.records import TaskRecord

PROCESS: dict[str, Any] = {
    "slug": "steps",
    "title": "Steps",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "work"}]},
        "work": {
            "on_error": "node_error",
            "logics": [
                {"type": "set_param", "set": {"x": "1"}},
                {"type": "set_param", "set": {"x": "{{ x }}2", "seen": "{{ x }}"}},
                {
                    "type": "condition",
                    "if": [{"param": "flag", "fun": "eq", "value": "yes"}],
                    "to": "yes",
                },
                {"type": "set_param", "set": {"after": "ran"}},
                {"type": "api_call", "url": "http://example.invalid/", "on_error": "call_error"},
                {"type": "go", "to": "waiting"},
            ],
        },
        "waiting": {
            "kind": "wait",
            "logics": [
                {"type": "wait_callback"},
                {"type": "set_param", "set": {"resumed": "yes"}},
                {"type": "go", "to": "yes"},
            ],
            "time_limit": {"to": "late", "after": 60},
        },
        "yes": {"kind": "success"},
        "late": {"kind": "escalation"},
        "node_error": {"kind": "escalation"},
        "call_error": {"kind": "escalation"},
    },
}


class Answering:
    """Stands in for api_call: records that it ran, then does what it is told."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.raise_: Exception | None = None

    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> str | None:
        self.calls.append(dict(result.data))
        if self.raise_ is not None:
            raise self.raise_
        return None


@pytest.fixture
def world(sqlite_url: str) -> Iterator[tuple[Runtime, Deployed]]:
    rt = runtime(sqlite_url)
    try:
        yield rt, deploy(rt, PROCESS)["steps"]
    finally:
        rt.db.dispose()


def step(
    rt: Runtime, where: Deployed, task: TaskRecord, handlers: dict[str, StepHandler]
) -> StepResult:
    interpreter = Interpreter(rt, handlers)
    return asyncio.run(interpreter.run(task, where.process_id, where.definition))


def handlers_with(rt: Runtime, api_call: Answering) -> dict[str, StepHandler]:
    return {**rt.plugins.step_handlers(rt), "api_call": api_call}


def test_a_nodes_logics_run_in_order(world: tuple[Runtime, Deployed]) -> None:
    rt, where = world
    api = Answering()
    result = step(
        rt, where, put_task(rt, where, "work", data={"flag": "no"}), handlers_with(rt, api)
    )
    # The second set_param saw the first's x; the api_call ran after the set_params.
    assert result.data["x"] == "12" and result.data["seen"] == "1"
    assert api.calls == [{"flag": "no", "x": "12", "seen": "1", "after": "ran"}]
    assert result.to == "waiting"  # the last logic, a go
    assert result.wake_at is not None  # the wait node's time limit, from now


def test_a_matching_condition_picks_the_next_node_and_ends_the_node(
    world: tuple[Runtime, Deployed],
) -> None:
    rt, where = world
    api = Answering()
    task = put_task(rt, where, "work", data={"flag": "yes"})
    result = step(rt, where, task, handlers_with(rt, api))
    assert result.to == "yes"
    assert "after" not in result.data and api.calls == []  # nothing after it ran
    assert result.events == []  # a plain move: commit_step writes the transition


def test_a_logic_failure_takes_the_logics_error_path(world: tuple[Runtime, Deployed]) -> None:
    rt, where = world
    api = Answering()
    fields = {"error": "DOWN", "code": "DOWN", "message": "the server is down"}
    api.raise_ = LogicFailure(fields)
    result = step(rt, where, put_task(rt, where, "work"), handlers_with(rt, api))
    assert result.to == "call_error"  # the logic's own on_error, before the node's
    assert result.data["after"] == "ran" and result.data["error"] == "DOWN"
    [event] = result.events
    assert (event.kind, event.node_id, event.to_node_id) == ("logic_error", "work", "call_error")
    assert event.detail == {"logic": "api_call", **fields}


def test_a_failure_without_its_own_path_takes_the_nodes(world: tuple[Runtime, Deployed]) -> None:
    rt, where = world
    task = put_task(rt, where, "work", data={"flag": "no"})
    handlers = rt.plugins.step_handlers(rt)
    handlers["set_param"] = Failing()
    result = step(rt, where, task, handlers)
    assert result.to == "node_error"
    assert result.data["code"] == "SET_FAILED"
    assert result.events[0].detail is not None and result.events[0].detail["logic"] == "set_param"


class Failing:
    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> str | None:
        raise LogicFailure({"error": "SET_FAILED", "code": "SET_FAILED", "message": "no"})


def test_a_logic_with_no_handler_fails_as_bad_logic(world: tuple[Runtime, Deployed]) -> None:
    rt, where = world
    handlers = {k: v for k, v in rt.plugins.step_handlers(rt).items() if k != "api_call"}
    result = step(rt, where, put_task(rt, where, "work"), handlers)
    assert result.to == "call_error" and result.data["code"] == "BAD_LOGIC"


def test_a_deferred_step_is_handed_to_the_worker(world: tuple[Runtime, Deployed]) -> None:
    rt, where = world
    api = Answering()
    api.raise_ = StepDeferred(12345.0, "another worker may be sending")
    with pytest.raises(StepDeferred) as deferred:
        step(rt, where, put_task(rt, where, "work"), handlers_with(rt, api))
    assert deferred.value.until == 12345.0  # neither an error path nor a result


def test_a_wait_node_runs_only_when_resumed(world: tuple[Runtime, Deployed]) -> None:
    rt, where = world
    handlers = rt.plugins.step_handlers(rt)
    entered = put_task(rt, where, "waiting", state="waiting", wake_at=99.0)
    result = step(rt, where, entered, handlers)
    assert result.to is None and result.wake_at == 99.0 and "resumed" not in result.data
    resumed = put_task(rt, where, "waiting", entry="resume")
    result = step(rt, where, resumed, handlers)  # the logics after wait_callback
    assert result.to == "yes" and result.data["resumed"] == "yes"


def test_a_time_limit_leaves_for_its_node(world: tuple[Runtime, Deployed]) -> None:
    rt, where = world
    task = put_task(rt, where, "waiting", state="waiting", entry="timeout")
    result = step(rt, where, task, rt.plugins.step_handlers(rt))
    assert result.to == "late"
    assert [(e.kind, e.to_node_id) for e in result.events] == [("time_limit", "late")]


def test_only_the_given_handlers_run(sqlite_url: str) -> None:
    """The interpreter knows no logic by name: it runs what it is handed."""
    rt = runtime(sqlite_url, plugins=[logics.plugin])
    try:
        where = deploy(rt, PROCESS)["steps"]
        task = put_task(rt, where, "work", data={"flag": "no"})
        result = step(rt, where, task, rt.plugins.step_handlers(rt))
    finally:
        rt.db.dispose()
    assert result.to == "call_error" and result.data["code"] == "BAD_LOGIC"
