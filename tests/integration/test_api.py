"""The REST API of SPEC §7: shapes, idempotency, paging, and every refusal changing
nothing. Runs a real server (with its engine) on 127.0.0.1 per database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from stack import Stack, running_stack

WAITER = {
    "slug": "waiter",
    "title": "Waiter",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "wait"}]},
        "wait": {
            "kind": "wait",
            "logics": [{"type": "wait_callback"}, {"type": "go", "to": "check"}],
        },
        "check": {
            "logics": [
                {
                    "type": "condition",
                    "if": [{"param": "answer", "fun": "eq", "value": "yes"}],
                    "to": "ok",
                },
                {"type": "go", "to": "wait"},
            ]
        },
        "ok": {"kind": "success"},
        "failed": {"kind": "escalation"},
    },
}


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url) as s:
        r = s.client.post("/api/v1/processes", json=WAITER)
        assert r.status_code == 201, r.text
        yield s


def _err(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body


def test_create_get_and_history(stack: Stack) -> None:
    r = stack.client.post("/api/v1/processes/waiter/tasks", json={"ref": "r1", "data": {"a": 1}})
    assert r.status_code == 201
    task = r.json()
    assert set(task) >= {"task_id", "ref", "process", "node", "state"}
    assert (task["ref"], task["process"]) == ("r1", "waiter")
    waiting = stack.wait(task["task_id"], state="waiting")
    assert waiting["node"] == {"id": "wait", "title": "wait", "kind": "wait"}
    assert waiting["outcome"] is None and waiting["version"] == 1
    moves = [(e["kind"], e["node_id"], e["to_node_id"]) for e in stack.history(task["task_id"])]
    assert moves == [("created", None, "start"), ("transition", "start", "wait")]


def test_a_task_without_ref_is_created_in_the_node_its_start_goes_to(stack: Stack) -> None:
    """The start node only says "go to wait": the task is stored waiting there, with the
    history its start step would have written. (With a ref it takes that step: a
    callback for the ref may come before the task is committed.)"""
    r = stack.client.post("/api/v1/processes/waiter/tasks", json={"data": {"a": 1}})
    task = r.json()
    assert r.status_code == 201 and (task["node"]["id"], task["state"]) == ("wait", "waiting")
    moves = [(e["kind"], e["node_id"], e["to_node_id"]) for e in stack.history(task["task_id"])]
    assert moves == [("created", None, "start"), ("transition", "start", "wait")]


def test_same_ref_same_data_is_an_idempotent_retry(stack: Stack) -> None:
    body = {"ref": "dup", "data": {"a": 1}}
    first = stack.client.post("/api/v1/processes/waiter/tasks", json=body)
    again = stack.client.post("/api/v1/processes/waiter/tasks", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["task_id"] == again.json()["task_id"]
    stack.wait(first.json()["task_id"], state="waiting")
    before = stack.counts()
    other = stack.client.post(
        "/api/v1/processes/waiter/tasks", json={"ref": "dup", "data": {"a": 2}}
    )
    _err(other, 409, "REF_CONFLICT")
    assert stack.counts() == before


def test_bad_requests_are_named_and_change_nothing(stack: Stack) -> None:
    before = stack.counts()
    c = stack.client
    _err(c.post("/api/v1/processes/waiter/tasks", content=b"{not json"), 400, "MALFORMED_JSON")
    _err(c.post("/api/v1/processes/waiter/tasks", content=b""), 400, "MALFORMED_JSON")
    _err(c.post("/api/v1/processes/waiter/tasks", json=[1, 2]), 422, "INVALID_BODY")
    _err(c.post("/api/v1/processes/nope/tasks", json={"data": {}}), 404, "PROCESS_NOT_FOUND")
    _err(c.post("/api/v1/processes/waiter/tasks", json={"ref": "x"}), 422, "MISSING_DATA")
    _err(c.post("/api/v1/processes/waiter/tasks", json={"data": []}), 422, "INVALID_DATA")
    _err(c.post("/api/v1/processes/waiter/tasks", json={"data": {}, "ref": ""}), 422, "INVALID_REF")
    _err(
        c.post("/api/v1/processes/waiter/tasks", json={"data": {}, "ref": "x" * 256}),
        422,
        "INVALID_REF",
    )
    _err(c.post("/api/v1/processes/waiter/tasks", json={"data": {}, "ref": 5}), 422, "INVALID_REF")
    _err(
        c.post("/api/v1/processes/waiter/tasks", json={"data": {}, "extra": 1}),
        422,
        "UNKNOWN_FIELDS",
    )
    big = {"data": {"blob": "x" * (128 * 1024)}}
    _err(c.post("/api/v1/processes/waiter/tasks", json=big), 413, "TASK_TOO_LARGE")
    huge = b'{"data": {"blob": "' + b"x" * (300 * 1024) + b'"}}'
    _err(c.post("/api/v1/processes/waiter/tasks", content=huge), 413, "REQUEST_TOO_LARGE")
    _err(c.get("/api/v1/tasks/ffffffffffffffffffffffff"), 404, "TASK_NOT_FOUND")
    _err(c.get("/api/v1/tasks/ffffffffffffffffffffffff/history"), 404, "TASK_NOT_FOUND")
    _err(c.get("/api/v1/processes/waiter/tasks?state=bogus"), 422, "INVALID_FILTER")
    _err(c.get("/api/v1/processes/waiter/tasks?limit=abc"), 422, "INVALID_FILTER")
    _err(c.get("/api/v1/processes/waiter/tasks?cursor=zzz"), 422, "INVALID_CURSOR")
    _err(c.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
    _err(c.delete("/api/v1/processes"), 405, "METHOD_NOT_ALLOWED")
    assert stack.counts() == before


def test_list_filters_and_pages(stack: Stack) -> None:
    ids = [stack.create({"n": i}, ref=f"p{i}", process="waiter")["task_id"] for i in range(7)]
    for task_id in ids:
        stack.wait(task_id, state="waiting")
    seen: list[str] = []
    cursor = None
    while True:
        q = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = stack.client.get(f"/api/v1/processes/waiter/tasks?{q}").json()
        seen += [t["task_id"] for t in page["tasks"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))  # newest first, no gaps, no repeats
    one = stack.client.get("/api/v1/processes/waiter/tasks?ref=p3").json()["tasks"]
    assert [t["task_id"] for t in one] == [ids[3]]
    by_node = stack.client.get("/api/v1/processes/waiter/tasks?node=wait&state=waiting")
    assert len(by_node.json()["tasks"]) == 7
    assert stack.client.get("/api/v1/processes/waiter/tasks?outcome=success").json()["tasks"] == []


def test_modify_by_ref_releases_a_waiting_task(stack: Stack) -> None:
    task_id = stack.create({"a": 1}, ref="m1", process="waiter")["task_id"]
    stack.wait(task_id, state="waiting")
    r = stack.client.patch("/api/v1/processes/waiter/tasks/m1", json={"data": {"answer": "no"}})
    assert r.status_code == 200
    assert r.json()["data"]["answer"] == "no"
    waiting = stack.wait(task_id, state="waiting")
    assert waiting["data"] == {"a": 1, "answer": "no"}
    # A stray field (a misplaced ref, a typo) is named, as on create, and changes nothing.
    _err(
        stack.client.patch(
            "/api/v1/processes/waiter/tasks/m1", json={"data": {"answer": "yes"}, "ref": "m2"}
        ),
        422,
        "UNKNOWN_FIELDS",
    )
    assert stack.wait(task_id, state="waiting")["data"] == {"a": 1, "answer": "no"}
    r = stack.client.patch("/api/v1/processes/waiter/tasks/m1", json={"data": {"answer": "yes"}})
    done = stack.wait(task_id)
    assert (done["outcome"], done["node"]["id"]) == ("success", "ok")
    _err(
        stack.client.patch("/api/v1/processes/waiter/tasks/m1", json={"data": {"x": 1}}),
        404,
        "TASK_NOT_FOUND",
    )
    _err(
        stack.client.patch("/api/v1/processes/waiter/tasks/zz", json={"data": {"x": 1}}),
        404,
        "TASK_NOT_FOUND",
    )
    _err(
        stack.client.patch("/api/v1/processes/waiter/tasks/zz", json={"data": {}}),
        422,
        "INVALID_DATA",
    )
    kinds = [e["kind"] for e in stack.history(task_id)]
    assert kinds.count("callback") == 2


def test_processes_show_counters_and_callback_urls(stack: Stack) -> None:
    listed = stack.client.get("/api/v1/processes").json()["processes"]
    slugs = {p["slug"] for p in listed}
    assert {"sending-sms", "getting-callback", "waiter"} <= slugs
    for _ in range(2):
        stack.wait(stack.create({}, process="waiter")["task_id"], state="waiting")
    view = stack.client.get("/api/v1/processes/waiter").json()
    by_id = {n["id"]: n for n in view["nodes"]}
    assert by_id["wait"]["count"] == 2
    assert by_id["ok"]["count"] == 0
    urls = by_id["wait"]["callback_urls"]
    conv = view["conv_id"]
    assert urls["json"].startswith(f"{stack.settings.public_url}/api/1/json/callback/{conv}/")
    hash_ = urls["json"].rsplit("/", 1)[1]
    assert len(hash_) == 40 and int(hash_, 16) >= 0
    assert urls["twilio"] == urls["json"].replace("/callback/", "/plugins/twilio/")
    assert urls["nvp"] == urls["json"].replace("/json/", "/nvp/") + "/{{root.task_id}}"
    assert "callback_urls" not in by_id["check"]
    same = stack.client.get(f"/api/v1/processes/{conv}").json()
    assert same["slug"] == "waiter"
    assert view["counts"]["waiting"] == 2


def test_deploy_validates_and_keeps_running_tasks_on_their_version(stack: Stack) -> None:
    bad = {**WAITER, "nodes": {**WAITER["nodes"], "orphan": {"kind": "success"}}}
    body = _err(stack.client.post("/api/v1/processes", json=bad), 422, "INVALID_PROCESS")
    assert body["error"]["details"]["node"] == "orphan"
    old = stack.create({}, process="waiter")["task_id"]
    stack.wait(old, state="waiting")
    v2 = {
        **WAITER,
        "nodes": {
            **WAITER["nodes"],
            "check": {
                "logics": [
                    {
                        "type": "condition",
                        "if": [{"param": "answer", "fun": "eq", "value": "yes"}],
                        "to": "failed",
                    },
                    {"type": "go", "to": "ok"},
                ]
            },
        },
    }
    r = stack.client.post("/api/v1/processes", json=v2)
    assert r.status_code == 201 and r.json()["deployed"][0]["version"] == 2
    assert r.json()["deployed"][0]["changes"] == ["~ node check"]
    same = stack.client.post("/api/v1/processes", json=v2)
    assert same.status_code == 200 and same.json()["deployed"][0]["created"] is False
    new = stack.create({}, process="waiter")["task_id"]
    stack.wait(new, state="waiting")
    # Release both through the inbox by task id (the NVP form of the wait node).
    url = stack.callback_url("waiter", "nvp")
    for task_id in (old, new):
        assert (
            httpx.post(url.replace("{{root.task_id}}", task_id), data={"answer": "yes"}).status_code
            == 200
        )
    old_done, new_done = stack.wait(old), stack.wait(new)
    assert (old_done["version"], old_done["outcome"]) == (1, "success")
    assert (new_done["version"], new_done["outcome"]) == (2, "escalation")


def test_loop_guard_stops_a_task_that_never_waits(stack: Stack) -> None:
    loop = {
        "slug": "looper",
        "title": "Looper",
        "nodes": {
            "start": {"kind": "start", "logics": [{"type": "go", "to": "a"}]},
            "a": {"logics": [{"type": "go", "to": "b"}]},
            "b": {"logics": [{"type": "go", "to": "a"}]},
            "stop": {"kind": "escalation"},
        },
    }
    assert stack.client.post("/api/v1/processes", json=loop).status_code == 201
    done = stack.wait(stack.create({}, process="looper")["task_id"])
    assert (done["node"]["id"], done["data"]["code"]) == ("stop", "LOOP_LIMIT")
    transitions = [e for e in stack.history(done["task_id"]) if e["kind"] == "transition"]
    assert len(transitions) == 51


def test_secrets_never_come_back(stack: Stack) -> None:
    task = stack.create({"AuthToken": "planted-secret-123", "x": 1}, process="waiter")
    assert "AuthToken" not in task["data"]
    stack.wait(task["task_id"], state="waiting")
    for path in (
        f"/api/v1/tasks/{task['task_id']}",
        f"/api/v1/tasks/{task['task_id']}/history",
        "/api/v1/processes/waiter/tasks",
    ):
        assert "planted-secret-123" not in stack.client.get(path).text


def test_openapi_health_ready_metrics(stack: Stack) -> None:
    spec = stack.client.get("/api/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/processes/{process}/tasks" in spec["paths"]
    assert stack.client.get("/healthz").json() == {"status": "ok"}
    assert stack.client.get("/readyz").status_code == 200
    metrics = stack.client.get("/metrics").text
    assert 'orchestrator_tasks{process="waiter",state="waiting"}' in metrics
