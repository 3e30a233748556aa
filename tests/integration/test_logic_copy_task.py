"""copy_task: a new task in another process (all or listed parameters, optional ref), and
its error tags: not_unical_ref, copy_task_wrong_ref, template errors."""

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
                "copier",
                {
                    "type": "copy_task",
                    "process": "sink",
                    "ref": "{{ key }}",
                    "data": {"who": "{{ name }}"},
                },
            ),
            one_node("copy-all", {"type": "copy_task", "process": "sink"}),
        )
        yield s


def test_copy_with_ref_and_listed_params(stack: Stack) -> None:
    done = stack.run("copier", {"key": "k1", "name": "ann", "extra": 1, "AuthToken": "t"})
    assert done["outcome"] == "success"
    copy = stack.wait(stack.child(done["task_id"])["task_id"], state="waiting")
    assert copy["ref"] == "k1"
    assert copy["data"]["who"] == "ann" and "extra" not in copy["data"]
    assert copy["data"]["copy_task_id"] == done["task_id"]
    # The copy's "created" and the step's own events go in one multi-row insert.
    [created, *_] = stack.history(copy["task_id"])
    assert (created["kind"], created["detail"]) == (
        "created",
        {"by": "copy_task", "parent_task_id": done["task_id"]},
    )
    moves = [(e["node_id"], e["to_node_id"]) for e in stack.history(done["task_id"])]
    assert ("work", "ok") in moves


def test_copy_all_params_without_secrets(stack: Stack) -> None:
    done = stack.run("copy-all", {"a": 1, "b": [2], "ClientSecret": "s"})
    copy = stack.child(done["task_id"])
    assert (copy["data"]["a"], copy["data"]["b"]) == (1, [2])
    assert "ClientSecret" not in copy["data"]


def test_not_unical_ref(stack: Stack) -> None:
    assert stack.run("copier", {"key": "same", "name": "a"})["outcome"] == "success"
    second = stack.run("copier", {"key": "same", "name": "b"})
    assert (second["node"]["id"], second["data"]["error"]) == ("failed", "not_unical_ref")


@pytest.mark.parametrize(
    ("key", "error"), [("", "copy_task_wrong_ref"), ("x" * 256, "copy_task_wrong_ref")]
)
def test_wrong_ref(stack: Stack, key: str, error: str) -> None:
    done = stack.run("copier", {"key": key, "name": "a"})
    assert done["data"]["error"] == error


def test_template_error(stack: Stack) -> None:
    done = stack.run("copier", {"key": "k9"})
    assert (done["node"]["id"], done["data"]["error"]) == ("failed", "TEMPLATE_METADATA_ERROR")
