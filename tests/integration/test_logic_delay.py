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


def test_version_pinning_across_a_delay(stack: Stack) -> None:
    """Deploy v2 while a v1 task sits in the delay node: each finishes on its own version."""
    old = stack.create({"seconds": 2}, process="delayed")["task_id"]
    stack.wait(old, state="waiting")
    v2 = {**DELAYED, "nodes": {**DELAYED["nodes"]}}
    v2["nodes"]["after"] = {
        "logics": [{"type": "set_param", "set": {"v": 2}}, {"type": "go", "to": "ok"}]
    }
    v2["title"] = "Delayed v2"
    answer = stack.deploy(v2)
    assert answer["deployed"][0]["version"] == 2
    new = stack.create({"seconds": 0}, process="delayed")["task_id"]
    old_done, new_done = stack.wait(old), stack.wait(new)
    assert (old_done["version"], "v" in old_done["data"], "woke" in old_done["data"]) == (
        1,
        False,
        True,
    )
    assert (new_done["version"], new_done["data"]["v"], "woke" in new_done["data"]) == (2, 2, False)
