"""Hardening: size limits and content types on every route, security headers, no stack
traces in errors, replayed Twilio callbacks, and who-did-it in the task history."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from stack import ACCOUNT, TOKEN, Stack, running_stack
from test_api import WAITER

from orchestrator.config import Settings
from orchestrator.http.app import create_app
from orchestrator.twilio.signature import compute_signature

LIMIT = 8192
KEY = "hardening-secret-0123456789"


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url, max_request_bytes=LIMIT, api_keys=f"auditor:{KEY}") as s:
        s.client.headers["Authorization"] = f"Bearer {KEY}"
        assert s.client.post("/api/v1/processes", json=WAITER).status_code == 201
        yield s


def _urls(s: Stack) -> dict[str, str]:
    nodes = s.client.get("/api/v1/processes/waiter").json()["nodes"]
    urls: dict[str, str] = next(n for n in nodes if n["id"] == "wait")["callback_urls"]
    return urls


def _chunks(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), 1000):
        yield data[i : i + 1000]


def test_every_route_refuses_oversize_bodies(stack: Stack) -> None:
    urls = _urls(stack)
    big = b"x" * (LIMIT + 1)
    targets = [
        f"{stack.api}/api/v1/processes",
        f"{stack.api}/api/v1/processes/waiter/tasks",
        urls["json"],
        urls["twilio"],
        urls["nvp"].replace("{{root.task_id}}", "0" * 24),
        f"{stack.api}/api/2/json/auditor/1/{'0' * 40}",
    ]
    before = stack.counts()
    for url in targets:
        form = "/twilio/" in url or "/nvp/" in url
        headers = {
            "Authorization": f"Bearer {KEY}",
            "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
        }
        for content in (big, _chunks(big)):  # with Content-Length, and chunked without
            r = httpx.post(url, content=content, headers=headers)
            assert r.status_code == 413, (url, r.text)
            assert r.json()["error"]["code"] == "REQUEST_TOO_LARGE"
            assert r.headers["x-content-type-options"] == "nosniff"
    assert stack.counts() == before


def test_content_types_are_strict(stack: Stack) -> None:
    urls = _urls(stack)
    before = stack.counts()
    body = json.dumps({"ref": "ct", "data": {"a": 1}})
    for ctype in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
    ):
        r = stack.client.post(
            "/api/v1/processes/waiter/tasks", content=body, headers={"Content-Type": ctype}
        )
        assert r.status_code == 415 and r.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
        r = httpx.post(urls["json"], content=body, headers={"Content-Type": ctype})
        assert r.status_code == 415
    for url in (urls["twilio"], urls["nvp"].replace("{{root.task_id}}", "0" * 24)):
        r = httpx.post(url, json={"MessageSid": "SM1"})
        assert r.status_code == 415 and r.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert stack.counts() == before
    ok = stack.client.post(
        "/api/v1/processes/waiter/tasks",
        content=body,
        headers={"Content-Type": "application/json; charset=UTF-8"},
    )
    assert ok.status_code == 201


def test_security_headers(stack: Stack) -> None:
    for r in (
        stack.client.get("/api/v1/processes"),
        stack.client.get("/api/v1/nowhere"),
        httpx.get(f"{stack.api}/healthz"),
        httpx.post(_urls(stack)["json"], json={"ref": "none"}),
    ):
        h = r.headers
        assert h["x-content-type-options"] == "nosniff"
        assert h["x-frame-options"] == "DENY"
        assert h["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in h["content-security-policy"]
        assert h["cache-control"] == "no-store"
        assert "strict-transport-security" not in h  # served over plain HTTP here


def test_server_errors_carry_no_internals(tmp_path: Path) -> None:
    """A database without tables makes every query fail: the answer is a plain 500."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/empty.db"), run_engine=False)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://orch") as c:
            return await c.get("/api/v1/processes")

    r = asyncio.run(go())
    assert r.status_code == 500
    assert r.json() == {
        "error": {"code": "INTERNAL_ERROR", "message": "the server could not handle this request"}
    }
    for leak in ("Traceback", "sqlite", "SELECT", "no such table", str(tmp_path)):
        assert leak not in r.text
    assert r.headers["x-content-type-options"] == "nosniff"


def test_unknown_hashes_change_nothing(stack: Stack) -> None:
    r = stack.client.post("/api/v1/processes/waiter/tasks", json={"ref": "u", "data": {"a": 1}})
    task_id = r.json()["task_id"]
    stack.wait(task_id, state="waiting")
    before = stack.counts()
    fields = {"ref": "u", "MessageSid": "SM1", "answer": "yes"}
    for form, url in _urls(stack).items():
        url = url.replace("{{root.task_id}}", task_id)
        real = next(part for part in url.split("/") if len(part) == 40)
        forged = url.replace(real, "0" * 40)
        for bad in (forged, url.replace(real, real[:-1]), url.replace(real, real.upper())):
            if form == "json":
                r = httpx.post(bad, json=fields)
            else:
                r = httpx.post(bad, data=fields)
            assert r.status_code == 404, (bad, r.text)
            assert r.json()["error"]["code"] == "NOT_FOUND"
    assert stack.counts() == before
    assert stack.task(task_id)["state"] == "waiting"


def test_replayed_twilio_callback_is_applied_once(db_url: str) -> None:
    with running_stack(db_url) as s:
        task_id = s.sms("+15551230000")["task_id"]  # the simulator sends no callback
        sid = s.wait(task_id, state="waiting")["data"]["sid"]
        url = s.callback_url("getting-callback", "twilio")
        params = {"AccountSid": ACCOUNT, "MessageSid": sid, "MessageStatus": "delivered"}
        headers = {
            "X-Twilio-Signature": compute_signature(url, params, TOKEN),
            "I-Twilio-Idempotency-Token": "idem-77",
        }
        assert httpx.post(url, data=params, headers=headers).json()["status"] == "accepted"
        assert s.wait(task_id)["outcome"] == "success"
        child = s.child(task_id)["task_id"]
        before = (s.counts(), s.history(task_id), s.history(child))
        # The captured request, replayed verbatim later, and without its token.
        for replay_headers in (headers, {"X-Twilio-Signature": headers["X-Twilio-Signature"]}):
            r = httpx.post(url, data=params, headers=replay_headers)
            assert r.status_code == 200 and r.json()["status"] == "duplicate"
        assert (s.counts(), s.history(task_id), s.history(child)) == before


def test_history_names_who_changed_a_task(stack: Stack) -> None:
    r = stack.client.post("/api/v1/processes/waiter/tasks", json={"ref": "h1", "data": {"a": 1}})
    task_id = r.json()["task_id"]
    stack.wait(task_id, state="waiting")
    r = stack.client.patch("/api/v1/processes/waiter/tasks/h1", json={"data": {"answer": "no"}})
    assert r.status_code == 200
    stack.wait(task_id, state="waiting")
    json_url = _urls(stack)["json"]
    assert httpx.post(json_url, json={"task_id": task_id, "answer": "yes"}).status_code == 200
    stack.wait(task_id)
    events = stack.history(task_id)
    assert events[0]["kind"] == "created"
    assert events[0]["detail"]["by"] == "api:auditor@127.0.0.1"
    sources = [
        (e["detail"]["form"], e["detail"]["source"]) for e in events if e["kind"] == "callback"
    ]
    assert sources == [("modify", "api:auditor@127.0.0.1"), ("json", "json:127.0.0.1")]


def test_out_of_range_ids_are_not_found(stack: Stack) -> None:
    """PostgreSQL refuses integers over 2^31-1 in a query: such an id is simply unknown."""
    for path in (
        "/api/v1/processes/99999999999",
        "/api/v1/processes/99999999999/tasks",
        "/api/v1/processes/%C2%B2",  # "²": str.isdigit() says yes, int() says no
    ):
        r = stack.client.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "PROCESS_NOT_FOUND"
    for conv_id in ("99999999999", "%C2%B2"):
        r = httpx.post(f"{stack.api}/api/1/json/callback/{conv_id}/{'0' * 40}", json={"ref": "x"})
        assert r.status_code == 404


def test_deeply_nested_json_is_refused_not_a_500(stack: Stack) -> None:
    """900 levels pass Python's parser but not the recursive walks of task data; 3000
    exhaust the parser itself. Both were 500s."""
    before = stack.counts()
    for depth in (900, 3000):
        nested = b"[" * depth + b"]" * depth
        r = stack.client.post(
            "/api/v1/processes/waiter/tasks",
            content=b'{"ref": "d", "data": {"a": ' + nested + b"}}",
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "MALFORMED_JSON"
        assert "nested deeper than 100 levels" in r.json()["error"]["message"]
        r = httpx.post(_urls(stack)["json"], content=b'{"ref": "d", "a": ' + nested + b"}")
        assert r.status_code == 400
        ops = b'{"ops": [{"type": "create", "conv_id": "waiter", "data": {"a": ' + nested + b"}}]}"
        at = str(int(time.time()))
        sig = hashlib.sha1(f"{at}{KEY}".encode() + ops + KEY.encode()).hexdigest()
        r = httpx.post(f"{stack.api}/api/2/json/auditor/{at}/{sig}", content=ops)
        assert r.status_code == 200 and r.json()["request_proc"] == "format_error"
    assert stack.counts() == before


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 5000])
def test_numbers_json_cannot_carry_are_refused(stack: Stack, number: bytes) -> None:
    """Python reads these, JSON has no such numbers: stored, they would break every later
    answer about the task."""
    before = stack.counts()
    body = b'{"ref": "n", "data": {"a": ' + number + b"}}"
    r = stack.client.post("/api/v1/processes/waiter/tasks", content=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "MALFORMED_JSON"
    r = httpx.post(_urls(stack)["json"], content=b'{"ref": "n", "a": ' + number + b"}")
    assert r.status_code == 400
    ops = b'{"ops": [{"type": "create", "conv_id": "waiter", "data": {"a": ' + number + b"}}]}"
    at = str(int(time.time()))
    sig = hashlib.sha1(f"{at}{KEY}".encode() + ops + KEY.encode()).hexdigest()
    r = httpx.post(f"{stack.api}/api/2/json/auditor/{at}/{sig}", content=ops)
    assert r.status_code == 200 and r.json()["request_proc"] == "format_error"
    assert stack.counts() == before
