"""go, and the loop guard: more than 50 transitions without waiting → LOOP_LIMIT; the count
restarts whenever the task waits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from stack import Stack, running_stack

LOOPER = {
    "slug": "looper-go",
    "title": "Looper",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "count"}]},
        "count": {
            "logics": [
                {"type": "set_param", "set": {"n": "{{ n | default(0) + 1 }}"}},
                {
                    "type": "condition",
                    "if": [{"param": "n", "fun": "more_eq", "value": 60, "cast": "number"}],
                    "to": "done",
                },
                {
                    "type": "condition",
                    "if": [{"param": "pause_every", "fun": "eq", "value": "yes"}],
                    "to": "breathe",
                },
                {"type": "go", "to": "count"},
            ]
        },
        "breathe": {"kind": "delay", "time_limit": {"after": 0, "to": "count"}},
        "done": {"kind": "success"},
        "stop": {"kind": "escalation"},
    },
}


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url) as s:
        s.deploy(LOOPER)
        yield s


def test_go_moves_the_task(stack: Stack) -> None:
    done = stack.run("looper-go", {"n": 100})
    assert (done["outcome"], done["data"]["n"]) == ("success", 101)
    moves = [(e["node_id"], e["to_node_id"]) for e in stack.history(done["task_id"])]
    assert [m for m in moves if m[1]][-2:] == [("start", "count"), ("count", "done")]


def test_loop_guard(stack: Stack) -> None:
    done = stack.run("looper-go", {})
    assert (done["node"]["id"], done["data"]["error"]) == ("stop", "LOOP_LIMIT")
    assert done["data"]["n"] == 50
    transitions = [e for e in stack.history(done["task_id"]) if e["kind"] == "transition"]
    assert len(transitions) == 51


def test_waiting_restarts_the_count(stack: Stack) -> None:
    done = stack.run("looper-go", {"pause_every": "yes"}, timeout=60)
    assert (done["outcome"], done["data"]["n"]) == ("success", 60)
