"""The api_call logic against a real HTTP server on 127.0.0.1: success paths (JSON, form,
raw bodies; objects merged, arrays and text into a named parameter) and every error tag."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from servers import run_app
from sqlalchemy import select
from stack import Stack, running_stack
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from orchestrator.store.tables import effects

CALLS: list[dict[str, Any]] = []


async def echo(request: Request) -> Response:
    body = await request.body()
    seen = {
        "method": request.method,
        "path": request.url.path,
        "query": dict(request.query_params),
        "content_type": request.headers.get("content-type"),
        "auth": request.headers.get("authorization"),
        "idem": request.headers.get("idempotency-key"),
        "body": body.decode(),
    }
    CALLS.append(seen)
    return JSONResponse({"echo": seen, "ok": True}, status_code=201)


async def array(_: Request) -> Response:
    return JSONResponse([1, 2, 3])


async def text(_: Request) -> Response:
    return PlainTextResponse("pong")


async def status(request: Request) -> Response:
    return JSONResponse({"why": "nope"}, status_code=int(request.path_params["code"]))


async def slow(_: Request) -> Response:
    await asyncio.sleep(3)
    return JSONResponse({"late": True})


async def big(_: Request) -> Response:
    return PlainTextResponse("x" * 200_000)


async def not_json(_: Request) -> Response:
    # Python's json reads both; neither may reach task data.
    return Response(
        '{"a": NaN, "deep": ' + "[" * 900 + "]" * 900 + "}", media_type="application/json"
    )


async def almost_big(_: Request) -> Response:
    return JSONResponse({"filler": "y" * 100_000})


APP = Starlette(
    routes=[
        Route("/echo/{rest:path}", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/array", array),
        Route("/text", text),
        Route("/status/{code}", status, methods=["GET", "POST"]),
        Route("/slow", slow),
        Route("/big", big),
        Route("/almost-big", almost_big),
        Route("/not-json", not_json),
    ]
)


def process(slug: str, logic: dict[str, Any]) -> dict[str, Any]:
    return {
        "slug": slug,
        "title": slug,
        "nodes": {
            "start": {"kind": "start", "logics": [{"type": "go", "to": "call"}]},
            "call": {
                "on_error": "failed",
                "logics": [{"type": "api_call", **logic}, {"type": "go", "to": "ok"}],
            },
            "ok": {"kind": "success"},
            "failed": {"kind": "escalation"},
        },
    }


@pytest.fixture
def server() -> Iterator[str]:
    CALLS.clear()
    with run_app(APP) as url:
        yield url


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    # The test servers listen on loopback, which api_call refuses unless allowed.
    with running_stack(db_url, api_call_allow="127.0.0.1") as s:
        yield s


def test_json_post_with_templates_headers_and_params(stack: Stack, server: str) -> None:
    stack.deploy(
        process(
            "api-json",
            {
                "method": "POST",
                "url": server + "/echo/orders/{{ order }}",
                "params": {"verbose": "{{ verbose }}"},
                "headers": {"Authorization": "Bearer {{ ApiToken }}"},
                "body": {"order": "{{ order }}", "items": "{{ items }}"},
            },
        )
    )
    done = stack.run("api-json", {"order": 42, "verbose": True, "items": [1, 2], "ApiToken": "t0k"})
    assert done["outcome"] == "success", done
    seen = done["data"]["echo"]
    assert (seen["method"], seen["path"]) == ("POST", "/echo/orders/42")
    assert seen["query"] == {"verbose": "true"}
    assert CALLS[-1]["auth"] == "Bearer t0k"
    assert "auth" not in seen  # a secret-named field of the answer is sealed, not data
    assert seen["content_type"] == "application/json"
    assert json.loads(seen["body"]) == {"order": 42, "items": [1, 2]}
    assert seen["idem"].startswith(done["task_id"])
    assert done["data"]["ok"] is True
    assert "ApiToken" not in done["data"]  # secrets never reach task data


def test_form_and_raw_bodies_and_status_param(stack: Stack, server: str) -> None:
    stack.deploy(
        process(
            "api-form",
            {
                "method": "PUT",
                "url": server + "/echo/f",
                "format": "form",
                "body": {"a": "{{ a }}", "b": "x y"},
                "headers": {"idempotency-key": "mine-{{ a }}"},
                "status_param": "http_status",
            },
        ),
        process(
            "api-raw",
            {
                "method": "PATCH",
                "url": server + "/echo/r",
                "format": "raw",
                "content_type": "application/xml",
                "body": "<a>{{ a }}</a>",
            },
        ),
    )
    form = stack.run("api-form", {"a": 1})
    assert form["data"]["echo"]["content_type"] == "application/x-www-form-urlencoded"
    assert form["data"]["echo"]["body"] == "a=1&b=x+y"
    assert form["data"]["http_status"] == 201
    assert form["data"]["echo"]["idem"] == "mine-1"  # the author's key wins
    raw = stack.run("api-raw", {"a": 7})
    assert raw["data"]["echo"]["content_type"] == "application/xml"
    assert raw["data"]["echo"]["body"] == "<a>7</a>"


def test_array_and_text_answers_go_to_a_named_param(stack: Stack, server: str) -> None:
    stack.deploy(
        process("api-array", {"url": server + "/array", "response_param": "numbers"}),
        process("api-text", {"url": server + "/text"}),
    )
    assert stack.run("api-array", {})["data"]["numbers"] == [1, 2, 3]
    assert stack.run("api-text", {})["data"]["api_response"] == "pong"


def test_an_answer_json_cannot_carry_is_kept_as_text(stack: Stack, server: str) -> None:
    """NaN stored in a task broke every later answer about it (500); 900 levels of nesting
    broke redaction."""
    stack.deploy(process("api-nan", {"url": server + "/not-json"}))
    task = stack.run("api-nan", {})
    assert task["outcome"] == "success"
    assert task["data"]["api_response"].startswith('{"a": NaN')


@pytest.mark.parametrize("code", [400, 404, 500, 302])
def test_non_2xx_is_a_bad_answer(stack: Stack, server: str, code: int) -> None:
    stack.deploy(process("api-bad", {"method": "POST", "url": f"{server}/status/{code}"}))
    done = stack.run("api-bad", {})
    assert (done["outcome"], done["node"]["id"]) == ("escalation", "failed")
    assert done["data"]["error"] == "api_bad_answer"
    assert done["data"]["http_status"] == code
    if code != 302:
        assert "nope" in done["data"]["response_body"]
    errors = [e for e in stack.history(done["task_id"]) if e["kind"] == "logic_error"]
    assert errors and errors[0]["detail"]["logic"] == "api_call"


def test_timeout(stack: Stack, server: str) -> None:
    stack.deploy(process("api-slow", {"url": server + "/slow", "timeout": "0.5s"}))
    started = time.monotonic()
    done = stack.run("api-slow", {})
    assert done["data"]["error"] == "api_timeout"
    assert "0.5 s" in done["data"]["message"]
    assert time.monotonic() - started < 3


def test_failed_connect(stack: Stack) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stack.deploy(process("api-down", {"url": f"http://127.0.0.1:{port}/x"}))
    done = stack.run("api-down", {})
    assert done["data"]["error"] == "api_failed_connect"


def test_oversize_answer_and_oversize_task(stack: Stack, server: str) -> None:
    stack.deploy(
        process("api-big", {"url": server + "/big"}),
        process("api-almost", {"url": server + "/almost-big"}),
    )
    big = stack.run("api-big", {})
    assert big["data"]["error"] == "api_task_size_overflow_limit"
    # The answer alone fits, but not together with what the task already holds.
    almost = stack.run("api-almost", {"mine": "z" * 60_000})
    assert almost["data"]["error"] == "api_task_size_overflow_limit"
    assert "filler" not in almost["data"]


def test_bad_url_template(stack: Stack) -> None:
    stack.deploy(process("api-url", {"url": "{{ where }}"}))
    assert stack.run("api-url", {"where": "ftp://x"})["data"]["error"] == "api_bad_request"
    missing = stack.run("api-url", {})
    assert missing["data"]["error"] == "TEMPLATE_METADATA_ERROR"


def _effect(stack: Stack, task_id: str) -> Any:
    with stack.db.read() as conn:
        return conn.execute(select(effects).where(effects.c.task_id == task_id)).one()


def test_effect_recorded_without_query_or_body(stack: Stack, server: str) -> None:
    stack.deploy(
        process(
            "api-eff",
            {"method": "POST", "url": server + "/echo/e?key=s3cret", "body": {"pw": "{{ x }}"}},
        )
    )
    done = stack.run("api-eff", {"x": "hunter2"})
    row = _effect(stack, done["task_id"])
    assert (row.kind, row.status) == ("api_call", "done")
    assert "s3cret" not in row.request and "hunter2" not in row.request


def test_crash_recovery_never_repeats_a_post(db_url: str, server: str) -> None:
    """A step that began a call and died before its commit runs again: a POST is not
    sent twice (api_outcome_unknown); a GET is; a recent attempt is waited for."""
    from orchestrator.config import Settings
    from orchestrator.engine.api_call import ApiCalls
    from orchestrator.engine.definition import Logic
    from orchestrator.engine.runtime import Runtime
    from orchestrator.engine.steps import LogicFailure, StepDeferred, StepResult
    from orchestrator.store import effects as effect_store
    from orchestrator.store.records import TaskRecord

    rt = Runtime(Settings(database_url=db_url, api_call_allow="127.0.0.1"))
    calls = ApiCalls(rt)
    now = time.time()

    def task(task_id: str) -> TaskRecord:
        return TaskRecord(task_id, 1, 1, "call", "active", {}, now, now, step=3)

    def crashed(task_id: str, started: float) -> None:
        with rt.db.write() as conn:
            effect_store.begin(conn, task_id, 3, 0, "api_call", {}, started)

    async def attempt(task_id: str, method: str) -> StepResult:
        logic = Logic("api_call", 0, {"method": method, "url": server + "/echo/c", "timeout": 1})
        result = StepResult(data={})
        try:
            await calls.run(task(task_id), 1, logic, {"root": {}}, result)
        finally:
            await rt.aclose()
        return result

    try:
        crashed("a" * 24, now - 60)
        with pytest.raises(LogicFailure) as failed:
            asyncio.run(attempt("a" * 24, "POST"))
        assert failed.value.fields["error"] == "api_outcome_unknown"
        assert CALLS == []
        crashed("b" * 24, now)
        with pytest.raises(StepDeferred):
            asyncio.run(attempt("b" * 24, "POST"))
        assert CALLS == []
        crashed("c" * 24, now - 60)
        result = asyncio.run(attempt("c" * 24, "GET"))  # idempotent: sent again
        assert result.data["ok"] is True and len(CALLS) == 1
    finally:
        rt.db.dispose()
