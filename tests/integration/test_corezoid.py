"""The Corezoid-compatible task API, driven by the real ``corezoid`` client from PyPI and
by hand-signed requests for every refusal (each one changing nothing)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from corezoid import Corezoid
from stack import Stack, running_stack
from test_api import WAITER
from test_auth import create_key

from orchestrator.services.corezoid import parse_time

LOGIN = "cz"
SECRET = "corezoid-secret-0123456789"


def sign(time_text: str, secret: str, body: bytes) -> str:
    return hashlib.sha1((time_text + secret).encode() + body + secret.encode()).hexdigest()


def signed_post(
    base: str,
    body: Any,
    *,
    login: str = LOGIN,
    secret: str = SECRET,
    at: str | None = None,
    version: int = 2,
    signature: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    at = at if at is not None else str(int(time.time()))
    sig = signature if signature is not None else sign(at, secret, raw)
    return httpx.post(
        f"{base}/api/{version}/json/{login}/{at}/{sig}", content=raw, headers=headers or {}
    )


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url, api_keys=f"{LOGIN}:{SECRET}") as s:
        s.client.headers["Authorization"] = f"Bearer {SECRET}"
        r = s.client.post("/api/v1/processes", json=WAITER)
        assert r.status_code == 201, r.text
        yield s


def conv_id(s: Stack) -> int:
    value: int = s.client.get("/api/v1/processes/waiter").json()["conv_id"]
    return value


def op_of(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_proc"] == "ok" and len(body["ops"]) == 1, body
    op: dict[str, Any] = body["ops"][0]
    return op


def test_pypi_client_create_modify_show(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A key made with `orchestrator apikey create` (stored hashed + encrypted) signs."""
    secret = create_key(capsys, db_url, "1042")
    with running_stack(db_url) as s:
        s.client.headers["Authorization"] = f"Bearer {secret}"
        assert s.client.post("/api/v1/processes", json=WAITER).status_code == 201
        client = Corezoid("1042", secret, conv_id(s))
        client._host = s.api

        answer = json.loads(client.create_task("order-7", {"item": "book", "qty": 2}))
        assert answer["status_code"] == 200, answer
        body = json.loads(answer["response"])
        assert body["request_proc"] == "ok"
        created = body["ops"][0]
        assert (created["proc"], created["obj"], created["ref"]) == ("ok", "task", "order-7")
        task_id = created["obj_id"]
        assert len(task_id) == 24 and int(task_id, 16) >= 0
        assert client.task == []  # the client clears its queue only on HTTP 200
        s.wait(task_id, state="waiting")

        answer = json.loads(client.modify_task("order-7", {"answer": "yes"}))
        assert answer["status_code"] == 200
        modified = json.loads(answer["response"])["ops"][0]
        assert (modified["proc"], modified["obj_id"]) == ("ok", task_id)
        done = s.wait(task_id)
        assert done["outcome"] == "success" and done["data"]["answer"] == "yes"

        # show: the client has no method for it, so sign as it does.
        at = str(time.time())
        content = json.dumps(
            {"ops": [{"type": "show", "obj": "task", "conv_id": conv_id(s), "ref": "order-7"}]}
        )
        r = httpx.post(client.make_url(at, content), content=content)
        shown = op_of(r)
        assert shown["proc"] == "ok" and shown["obj_id"] == task_id
        assert shown["status"] == "processed" and shown["data"]["answer"] == "yes"
        assert shown["node_id"] == "ok" and isinstance(shown["create_time"], int)

        sources = [
            e["detail"].get("by") or e["detail"].get("source")
            for e in s.history(task_id)
            if e["kind"] in ("created", "callback")
        ]
        assert sources == ["corezoid:1042@127.0.0.1", "corezoid:1042@127.0.0.1"]


def test_ops_and_error_tags(stack: Stack) -> None:
    cid = conv_id(stack)
    create = {"type": "create", "obj": "task", "conv_id": cid, "ref": "r1", "data": {"a": 1}}
    first = op_of(signed_post(stack.api, {"ops": [{**create, "id": "x1"}]}))
    assert first["proc"] == "ok" and first["id"] == "x1"
    task_id = first["obj_id"]
    stack.wait(task_id, state="waiting")
    # The same create again is a retry (same task); other data under that ref is refused.
    assert op_of(signed_post(stack.api, {"ops": [create]}))["obj_id"] == task_id
    before = stack.counts()
    other = op_of(signed_post(stack.api, {"ops": [{**create, "data": {"a": 2}}]}))
    assert other["proc"] == "not_unical_ref" and other["description"]
    assert stack.counts() == before

    missing = {"type": "modify", "obj": "task", "conv_id": cid, "ref": "nope", "data": {"a": 1}}
    assert op_of(signed_post(stack.api, {"ops": [missing]}))["proc"] == "not_found_task"
    show = {"type": "show", "obj": "task", "conv_id": cid, "obj_id": "0" * 24}
    assert op_of(signed_post(stack.api, {"ops": [show]}))["proc"] == "not_found_task"
    unknown = {**create, "conv_id": 999999, "ref": "r9"}
    assert op_of(signed_post(stack.api, {"ops": [unknown]}))["proc"] == "access_denied"
    odd = op_of(signed_post(stack.api, {"ops": [{**create, "type": "delete"}]}))
    assert odd["proc"] == "error" and "type" in odd["description"]
    assert stack.counts() == before

    # modify by obj_id, on API v1, with a Content-Type that is not JSON: parsed anyway.
    by_id = {
        "type": "modify",
        "obj": "task",
        "conv_id": str(cid),
        "obj_id": task_id,
        "data": {"answer": "yes"},
    }
    r = signed_post(
        stack.api,
        {"ops": [by_id]},
        version=1,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert op_of(r)["proc"] == "ok"
    assert stack.wait(task_id)["outcome"] == "success"
    shown = op_of(signed_post(stack.api, {"ops": [{**show, "obj_id": task_id}]}))
    assert shown["ref"] == "r1" and shown["status"] == "processed"

    # A batch answers op by op.
    r = signed_post(stack.api, {"ops": [{**create, "ref": "b1"}, missing, "junk"]})
    procs = [o["proc"] for o in r.json()["ops"]]
    assert r.json()["request_proc"] == "ok" and procs == ["ok", "not_found_task", "error"]


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"ops": {}}', b'{"ops": []}', b"[1]", b'{"ops": [' + b"{}," * 100 + b"{}]}"],
)
def test_format_errors_change_nothing(stack: Stack, body: bytes) -> None:
    before = stack.counts()
    r = signed_post(stack.api, body)
    assert r.status_code == 200
    assert r.json()["request_proc"] == "format_error" and r.json()["ops"] == []
    assert stack.counts() == before


def test_refusals_change_nothing(stack: Stack) -> None:
    cid = conv_id(stack)
    body = {
        "ops": [{"type": "create", "obj": "task", "conv_id": cid, "ref": "z", "data": {"a": 1}}]
    }
    raw = json.dumps(body).encode()
    now = int(time.time())
    before = stack.counts()

    def denied(r: httpx.Response, words: str) -> None:
        assert r.status_code == 403, r.text
        assert r.json()["request_proc"] == "access_denied" and words in r.json()["description"]

    denied(signed_post(stack.api, raw, signature="0" * 40), "wrong signature")
    denied(signed_post(stack.api, raw, secret="another-secret-xyz"), "wrong signature")
    denied(signed_post(stack.api, raw, login="stranger"), "unknown login")
    denied(signed_post(stack.api, raw, at=str(now - 3600)), "away from the server")
    denied(signed_post(stack.api, raw, at=str(now + 3600)), "away from the server")
    denied(signed_post(stack.api, raw, at="1e9"), "Unix seconds")
    denied(signed_post(stack.api, raw, at="nan"), "Unix seconds")
    # A signature over other content does not cover this body.
    at = str(now)
    r = signed_post(stack.api, raw + b" ", at=at, signature=sign(at, SECRET, raw))
    denied(r, "wrong signature")
    assert stack.counts() == before

    # Upper-case hex is the same signature (Corezoid: "letter case is not important").
    at = str(now)
    r = signed_post(stack.api, raw, at=at, signature=sign(at, SECRET, raw).upper())
    stack.wait(op_of(r)["obj_id"], state="waiting")
    after_one = stack.counts()
    # The identical request again is a replay.
    denied(signed_post(stack.api, raw, at=at), "replay")
    assert stack.counts() == after_one

    huge = json.dumps({"ops": [{"type": "create", "data": {"x": "y" * 300_000}}]}).encode()
    r = signed_post(stack.api, huge)
    assert r.status_code == 413 and r.json()["error"]["code"] == "REQUEST_TOO_LARGE"
    assert stack.counts() == after_one


def test_time_window_is_configurable(db_url: str) -> None:
    with running_stack(db_url, api_keys=f"{LOGIN}:{SECRET}", corezoid_time_window=5000) as s:
        s.client.headers["Authorization"] = f"Bearer {SECRET}"
        assert s.client.post("/api/v1/processes", json=WAITER).status_code == 201
        body = {"ops": [{"type": "create", "obj": "task", "conv_id": "waiter", "data": {"a": 1}}]}
        r = signed_post(s.api, body, at=str(int(time.time()) - 3600))
        assert op_of(r)["proc"] == "ok"


def test_modify_of_a_task_not_waiting(sqlite_url: str) -> None:
    """Without an engine, a new task stays where it was created (Sending SMS: at
    calling_api, its start node only saying "go"): it cannot be modified."""
    import asyncio

    from orchestrator.config import Settings
    from orchestrator.engine.runtime import Runtime
    from orchestrator.http.app import create_app
    from orchestrator.services.deploy import ensure_shipped

    settings = Settings(database_url=sqlite_url, api_keys=f"{LOGIN}:{SECRET}")
    rt = Runtime(settings)
    ensure_shipped(rt)
    app = create_app(settings, runtime=rt, run_engine=False)
    op = {"obj": "task", "conv_id": "sending-sms", "ref": "still", "data": {"a": 1}}

    async def send(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raw = json.dumps({"ops": ops}).encode()
        at = str(int(time.time()))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://orch") as c:
            r = await c.post(f"/api/1/json/{LOGIN}/{at}/{sign(at, SECRET, raw)}", content=raw)
        result: list[dict[str, Any]] = r.json()["ops"]
        return result

    created, modified = asyncio.run(
        send([{**op, "type": "create"}, {**op, "type": "modify", "data": {"b": 2}}])
    )
    assert created["proc"] == "ok"
    assert modified["proc"] == "no_api_callback_in_node_with_task"
    assert modified["code"] == "TASK_NOT_WAITING"
    rt.db.dispose()


@pytest.mark.parametrize("text", ["1700000000", "1700000000.123456"])
def test_path_times_are_unix_seconds(text: str) -> None:
    assert parse_time(text) == float(text)


@pytest.mark.parametrize("text", ["1700000000\n", "17e8", "-1", " 1", "1.", ""])
def test_other_path_times_are_refused(text: str) -> None:
    assert parse_time(text) is None
