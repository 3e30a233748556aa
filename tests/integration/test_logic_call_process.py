"""call_process / reply: the caller waits for the called task's reply; reply keys merge in;
an exception (explicit, or a called task ending in escalation) sends the caller to its
error path; the time limit fires once; a late reply changes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from stack import Stack, running_stack


def callee(slug: str, *logics: dict[str, Any], final: str = "done") -> dict[str, Any]:
    nodes: dict[str, Any] = {
        "start": {"kind": "start", "logics": [*logics, {"type": "go", "to": final}]},
        "bad": {"kind": "escalation"},
    }
    if final == "done":
        nodes["done"] = {"kind": "success"}
    return {"slug": slug, "title": slug, "nodes": nodes}


def caller(slug: str, target: str, **call: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "on_error": "failed",
        "logics": [
            {"type": "call_process", "process": target, **call.pop("logic", {})},
            {"type": "go", "to": "ok"},
        ],
    }
    node.update(call)
    return {
        "slug": slug,
        "title": slug,
        "nodes": {
            "start": {"kind": "start", "logics": [{"type": "go", "to": "call"}]},
            "call": node,
            "ok": {"kind": "success"},
            "late": {"kind": "escalation"},
            "failed": {"kind": "escalation"},
        },
    }


WAITER = {
    "slug": "slowpoke",
    "title": "Slowpoke",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "hold"}]},
        "hold": {
            "kind": "wait",
            "logics": [
                {"type": "wait_callback"},
                {"type": "reply", "data": {"answer": "{{ answer }}"}},
                {"type": "go", "to": "done"},
            ],
        },
        "done": {"kind": "success"},
        "bad": {"kind": "escalation"},
    },
}


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url) as s:
        yield s


def events(stack: Stack, task_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in stack.history(task_id) if e["kind"] == kind]


def test_reply_merges_into_the_caller(stack: Stack) -> None:
    stack.deploy(
        callee(
            "doubler",
            {"type": "set_param", "set": {"twice": "{{ n * 2 }}", "scratch": 1}},
            {"type": "reply", "data": {"twice": "{{ twice }}"}},
        ),
        caller("ask-doubler", "doubler", logic={"data": {"n": "{{ n }}"}}),
    )
    done = stack.run("ask-doubler", {"n": 21})
    assert (done["outcome"], done["node"]["id"]) == ("success", "ok")
    assert done["data"]["twice"] == 42
    assert "scratch" not in done["data"]  # only the reply's keys come back
    child = stack.child(done["task_id"])
    assert child["data"] == {"n": 21, "twice": 42, "scratch": 1}
    assert events(stack, done["task_id"], "call_process")
    assert events(stack, done["task_id"], "reply")[0]["detail"]["from_task_id"] == child["task_id"]


def test_thrown_exception_goes_to_the_error_path(stack: Stack) -> None:
    stack.deploy(
        callee(
            "thrower",
            {"type": "reply", "exception": True, "data": {"code": "E42", "message": "boom"}},
        ),
        caller("ask-thrower", "thrower"),
    )
    done = stack.run("ask-thrower", {})
    assert (done["outcome"], done["node"]["id"]) == ("escalation", "failed")
    assert (done["data"]["error"], done["data"]["code"]) == ("rpc_exception", "E42")
    assert done["data"]["message"] == "boom"


def test_a_called_task_that_ends_replies_by_itself(stack: Stack) -> None:
    stack.deploy(
        callee("quiet", {"type": "set_param", "set": {"made": "here"}}),
        callee(
            "sinks",
            {"type": "set_param", "set": {"code": "X1", "message": "sank"}},
            final="bad",
        ),
        caller("ask-quiet", "quiet"),
        caller("ask-sinks", "sinks"),
    )
    quiet = stack.run("ask-quiet", {"a": 1})
    assert quiet["outcome"] == "success" and quiet["data"]["made"] == "here"
    sinks = stack.run("ask-sinks", {})
    assert sinks["node"]["id"] == "failed"
    assert (sinks["data"]["error"], sinks["data"]["code"]) == ("rpc_exception", "X1")


def test_timeout_fires_once_and_a_late_reply_changes_nothing(stack: Stack) -> None:
    stack.deploy(
        WAITER,
        caller("ask-slow", "slowpoke", logic={"timeout": "1s"}),
        caller("ask-slow-tl", "slowpoke", time_limit={"after": 1, "to": "late"}),
    )
    started = time.time()
    done = stack.run("ask-slow", {})
    assert time.time() - started >= 0.9
    assert (done["node"]["id"], done["data"]["error"]) == ("failed", "rpc_timeout")
    limited = stack.run("ask-slow-tl", {})
    assert limited["node"]["id"] == "late"
    assert len(events(stack, limited["task_id"], "time_limit")) == 1
    # Release the called task now: its reply comes too late.
    child = stack.child(done["task_id"])
    url = stack.callback_url("slowpoke", "nvp").replace("{{root.task_id}}", child["task_id"])
    assert httpx.post(url, data={"answer": "yes"}).status_code == 200
    stack.wait(child["task_id"])
    assert events(stack, child["task_id"], "reply_late")
    assert stack.task(done["task_id"])["data"] == done["data"]


def test_reply_without_a_caller_is_ignored(stack: Stack) -> None:
    stack.deploy(callee("lonely", {"type": "reply", "data": {"x": 1}}))
    done = stack.run("lonely", {})
    assert done["outcome"] == "success"
    assert events(stack, done["task_id"], "reply_ignored")


def test_template_error_in_call_data(stack: Stack) -> None:
    stack.deploy(
        callee("noop"),
        caller("ask-noop", "noop", logic={"data": {"x": "{{ missing }}"}}),
    )
    done = stack.run("ask-noop", {})
    assert (done["node"]["id"], done["data"]["error"]) == ("failed", "TEMPLATE_METADATA_ERROR")


def test_oversize_reply(stack: Stack) -> None:
    stack.deploy(
        callee("bloat", {"type": "reply", "data": {"blob": "{{ 'x' * 140000 }}"}}),
        caller("ask-bloat", "bloat"),
    )
    done = stack.run("ask-bloat", {})
    assert done["data"]["error"] == "rpc_task_size_overflow"
    assert "blob" not in done["data"]


def test_the_documented_score_and_loan_example(stack: Stack) -> None:
    from test_authoring import _doc_examples

    examples = {e["slug"]: e for e in _doc_examples()}
    stack.deploy(examples["score"], examples["loan"])
    decided = stack.run("loan", {"customer": "C1234"})
    assert decided["outcome"] == "success" and isinstance(decided["data"]["score"], int)
    refused = stack.run("loan", {"customer": "nobody"})
    assert (refused["node"]["id"], refused["data"]["code"]) == ("failed", "UNKNOWN_CUSTOMER")
    assert refused["data"]["message"] == "no customer nobody"


def test_a_caller_is_not_released_by_a_modification(stack: Stack) -> None:
    stack.deploy(WAITER, caller("ask-slow-2", "slowpoke", logic={"timeout": "30s"}))
    task = stack.create({}, ref="c1", process="ask-slow-2")
    waiting = stack.wait(task["task_id"], state="waiting")
    assert waiting["node"]["id"] == "call"
    r = stack.client.patch("/api/v1/processes/ask-slow-2/tasks/c1", json={"data": {"x": 1}})
    assert r.status_code == 409 and r.json()["error"]["code"] == "TASK_NOT_WAITING"
    # Now let the called task reply: the caller finishes through the reply.
    child = stack.child(task["task_id"])
    url = stack.callback_url("slowpoke", "nvp").replace("{{root.task_id}}", child["task_id"])
    assert httpx.post(url, data={"answer": "yes"}).status_code == 200
    done = stack.wait(task["task_id"])
    assert (done["node"]["id"], done["data"]["answer"]) == ("ok", "yes")
    assert "x" not in done["data"]
