"""The task size limit holds after every step, not only for the API: a step whose result
is over it escalates the task (task_size_overflow_limit) and nothing oversize is stored;
a callback that would push a waiting task over it is recorded, not applied."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from stack import Stack, running_stack
from test_api import WAITER

from orchestrator.store.tables import callbacks, task_events, tasks

LIMIT = 20_000
CHUNK = "'x' * 9000"


def _grower(slug: str, logic: dict[str, Any]) -> dict[str, Any]:
    return {
        "slug": slug,
        "title": slug,
        "on_error": "failed",  # the default escalation, apart from the logic's error path
        "nodes": {
            "start": {"kind": "start", "logics": [{"type": "go", "to": "grow"}]},
            "grow": {"on_error": "caught", "logics": [logic, {"type": "go", "to": "ok"}]},
            "ok": {"kind": "success"},
            "caught": {"kind": "escalation"},
            "failed": {"kind": "escalation"},
        },
    }


SETTER = _grower("setter", {"type": "set_param", "set": {k: "{{ " + CHUNK + " }}" for k in "abc"}})
COPIER = _grower(
    "copier",
    {
        "type": "copy_task",
        "process": "waiter",
        "data": {k: "{{ " + CHUNK + " }}" for k in "abc"},
        "on_error": "caught",
    },
)
MODIFIER = _grower(
    "modifier",
    {
        "type": "modify_task",
        "process": "waiter",
        "ref": "target",
        "data": {k: "{{ " + CHUNK + " }}" for k in "abc"},
        "on_error": "caught",
    },
)


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url, max_task_bytes=LIMIT) as s:
        s.deploy(WAITER, SETTER, COPIER, MODIFIER)
        yield s


def _largest_stored(s: Stack) -> int:
    with s.db.read() as conn:
        data = conn.execute(select(func.max(func.length(tasks.c.data)))).scalar_one()
        events = conn.execute(select(func.max(func.length(task_events.c.detail)))).scalar_one()
        payloads = conn.execute(select(func.max(func.length(callbacks.c.payload)))).scalar_one()
    return max(int(data or 0), int(events or 0), int(payloads or 0))


@pytest.mark.parametrize("slug", ["setter", "copier", "modifier"])
def test_a_step_over_the_limit_escalates_and_stores_nothing_oversize(
    stack: Stack, slug: str
) -> None:
    target = stack.create({"a": 1}, ref="target", process="waiter")
    stack.wait(target["task_id"], state="waiting")
    done = stack.run(slug, {"keep": "me"})
    assert (done["outcome"], done["node"]["id"]) == ("escalation", "failed"), done
    assert done["data"]["code"] == "task_size_overflow_limit"
    assert done["data"]["keep"] == "me" and "a" not in done["data"]
    assert f"over {LIMIT} bytes" in done["data"]["message"]
    errors = [e for e in stack.history(done["task_id"]) if e["kind"] == "logic_error"]
    assert errors and errors[-1]["detail"]["code"] == "task_size_overflow_limit"
    assert _largest_stored(stack) < LIMIT
    assert stack.counts()["tasks"] == 2  # no copy was made
    assert stack.task(target["task_id"])["state"] == "waiting"  # nor modified


def test_a_callback_that_would_overflow_the_task_is_recorded_not_applied(stack: Stack) -> None:
    task = stack.create({"a": 1}, ref="cb", process="waiter")
    stack.wait(task["task_id"], state="waiting")
    url = stack.callback_url("waiter", "json")
    big = {"task_id": task["task_id"], "answer": "yes", "filler": "y" * (LIMIT + 10)}
    assert httpx.post(url, json=big).status_code == 200
    ignored: list[dict[str, Any]] = []
    for _ in range(100):
        ignored = [e for e in stack.history(task["task_id"]) if e["kind"] == "callback_ignored"]
        if ignored:
            break
        time.sleep(0.05)
    assert ignored and "over" in ignored[0]["detail"]["reason"]
    assert stack.task(task["task_id"])["state"] == "waiting"
    assert "filler" not in stack.task(task["task_id"])["data"]
    small = {"task_id": task["task_id"], "answer": "yes"}
    assert httpx.post(url, json=small).status_code == 200
    assert stack.wait(task["task_id"])["outcome"] == "success"
