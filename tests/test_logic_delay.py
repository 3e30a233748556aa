"""delay nodes and time limits: a duration, a template, an absolute Unix time from a
parameter; each fires once and moves the task to the named node; BAD_TIME_LIMIT when the
limit cannot be computed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from stack import Stack, running_stack

DELAYED = {
    "slug": "delayed",
    "title": "Delayed",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "pause"}]},
        "pause": {
            "kind": "delay",
            "time_limit": {"at_param": "at", "after": "{{ seconds | default(1) }}", "to": "after"},
        },
        "after": {
            "logics": [
                {"type": "set_param", "set": {"woke": "{{ unixtime() }}"}},
                {"type": "go", "to": "ok"},
            ]
        },
        "ok": {"kind": "success"},
        "failed": {"kind": "escalation"},
    },
}

WAITING = {
    "slug": "waits-a-bit",
    "title": "Waits a bit",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "hold"}]},
        "hold": {
            "kind": "wait",
            "time_limit": {"after": "1s", "to": "gave_up"},
            "logics": [{"type": "wait_callback"}, {"type": "go", "to": "ok"}],
        },
        "ok": {"kind": "success"},
        "gave_up": {"kind": "escalation", "title": "Gave up"},
    },
}


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url) as s:
        s.deploy(DELAYED, WAITING)
        yield s


def kinds(stack: Stack, task_id: str, kind: str) -> int:
    return sum(1 for e in stack.history(task_id) if e["kind"] == kind)


@pytest.mark.parametrize("data", [{}, {"seconds": "1s"}, {"at": "now+1"}])
def test_delay_fires_once(stack: Stack, data: dict[str, Any]) -> None:
    started = time.time()
    if data.get("at") == "now+1":
        data = {"at": started + 1}
    task = stack.create(data, process="delayed")
    assert stack.wait(task["task_id"], state="waiting")["node"]["id"] == "pause"
    done = stack.wait(task["task_id"])
    assert done["outcome"] == "success"
    assert done["data"]["woke"] >= int(started) + 1
    assert kinds(stack, task["task_id"], "time_limit") == 1


def test_time_limit_on_a_wait_node(stack: Stack) -> None:
    done = stack.run("waits-a-bit", {})
    assert (done["node"]["id"], done["outcome"]) == ("gave_up", "escalation")
    assert kinds(stack, done["task_id"], "time_limit") == 1


@pytest.mark.parametrize("data", [{"at": "tomorrow"}, {"seconds": "soon"}])
def test_bad_time_limit(stack: Stack, data: dict[str, Any]) -> None:
    done = stack.run("delayed", data)
    assert (done["node"]["id"], done["data"]["error"]) == ("failed", "BAD_TIME_LIMIT")
