"""modify_task: writes into a waiting task of another process (by ref or task id) and
releases it; not_found_task when there is no unfinished task to modify."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from logic_procs import SINK, one_node
from stack import Stack, running_stack


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
