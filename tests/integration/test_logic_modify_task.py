"""modify_task: writes into a waiting task of another process (by ref or task id) and
releases it; not_found_task when there is no unfinished task to modify."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from logic_procs import SINK, one_node
from stack import FROM, Stack, running_stack


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url) as s:
        s.deploy(
            SINK,
            one_node(
                "by-ref",
                {
                    "type": "modify_task",
                    "process": "sink",
                    "ref": "{{ target }}",
                    "data": {"v": "{{ v }}"},
                },
            ),
            one_node(
                "by-id",
                {
                    "type": "modify_task",
                    "process": "sink",
                    "task_id": "{{ target }}",
                    "data": {"v": 2},
                },
            ),
        )
        yield s


def test_modify_by_ref_releases_the_waiting_task(stack: Stack) -> None:
    waiting = stack.wait(stack.create({}, ref="w1", process="sink")["task_id"], state="waiting")
    assert stack.run("by-ref", {"target": "w1", "v": 7})["outcome"] == "success"
    released = stack.wait(waiting["task_id"])
    assert (released["node"]["id"], released["data"]["v"]) == ("done", 7)


def test_modify_by_task_id(stack: Stack) -> None:
    waiting = stack.wait(stack.create({}, process="sink")["task_id"], state="waiting")
    assert stack.run("by-id", {"target": waiting["task_id"]})["outcome"] == "success"
    assert stack.wait(waiting["task_id"])["data"]["v"] == 2


def test_not_found_task(stack: Stack) -> None:
    for process, target in (("by-ref", "nobody"), ("by-id", "f" * 24)):
        done = stack.run(process, {"target": target, "v": 1})
        assert (done["node"]["id"], done["data"]["error"]) == ("failed", "not_found_task")


def test_a_finished_task_is_not_found(stack: Stack) -> None:
    waiting = stack.wait(stack.create({}, ref="w2", process="sink")["task_id"], state="waiting")
    stack.run("by-ref", {"target": "w2", "v": 1})
    stack.wait(waiting["task_id"])
    again = stack.run("by-ref", {"target": "w2", "v": 2})
    assert again["data"]["error"] == "not_found_task"


def _send(to: str) -> dict[str, Any]:
    return {"type": "twilio", "action": "send_sms", "params": {"To": to, "From": FROM, "Body": "x"}}


def _modify_nobody() -> dict[str, Any]:
    return {"type": "modify_task", "process": "sink", "ref": "nobody", "data": {"v": 1}}


def test_a_failed_target_lookup_after_a_send_sends_once(stack: Stack) -> None:
    """The target is looked up in the step's commit; when it is not there the step runs
    again with the lookup up front (engine/targets.py): the SMS sent before it is
    resolved from its record, never sent twice."""
    stack.deploy(one_node("send-then-modify", _send("+15551230001"), _modify_nobody()))
    done = stack.run("send-then-modify", {})
    assert (done["node"]["id"], done["data"]["error"]) == ("failed", "not_found_task")
    assert done["data"]["sid"].startswith("SM")
    assert stack.sim_stats()["requests"] == 1


def test_a_failed_target_lookup_before_a_send_sends_nothing(stack: Stack) -> None:
    """A logic reaching outside after the modify_task: looked up before, as the logic
    runs, so the failure leaves the node before the send."""
    stack.deploy(one_node("modify-then-send", _modify_nobody(), _send("+15551230002")))
    done = stack.run("modify-then-send", {})
    assert (done["node"]["id"], done["data"]["error"]) == ("failed", "not_found_task")
    assert stack.sim_stats()["requests"] == 0
