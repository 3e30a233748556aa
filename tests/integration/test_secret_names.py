"""One secret-name rule for everything stored (issue 12 item 2, issue 15 item 9).

Secret-named keys (``api_key``, ``Authorization``, ``access_token``, nested ones such as
``{"nested": {"AuthToken": …}}``) from task inputs, ``api_call`` answers, callbacks and
modifications are sealed before anything is stored, yet templates can still use them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from servers import run_app
from sqlalchemy import select
from stack import running_stack
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.crypto import Vault
from orchestrator.secretdata import (
    REDACTED,
    SEALED,
    is_secret_name,
    merge,
    redact,
    seal,
    split,
    unseal,
)
from orchestrator.store.db import Database
from orchestrator.store.tables import metadata

ACCESS = "ACCESS" + secrets.token_hex(8)
DEEP = "DEEP" + secrets.token_hex(8)
SEEN: list[str | None] = []


async def token(_: Request) -> Response:
    return JSONResponse({"access_token": ACCESS, "token_type": "bearer", "deep": {"id": 7}})


async def use(request: Request) -> Response:
    SEEN.append(request.headers.get("authorization"))
    SEEN.append(request.headers.get("x-key"))
    return JSONResponse({"used": True, "session": {"client_secret": DEEP}})


APP = Starlette(
    routes=[Route("/token", token, methods=["POST"]), Route("/use", use, methods=["GET"])]
)


def process(server: str) -> dict[str, Any]:
    return {
        "slug": "oauth",
        "title": "oauth",
        "nodes": {
            "start": {"kind": "start", "logics": [{"type": "go", "to": "login"}]},
            "login": {
                "on_error": "failed",
                "logics": [
                    {"type": "api_call", "method": "POST", "url": f"{server}/token", "body": {}},
                    {"type": "go", "to": "use"},
                ],
            },
            "use": {
                "on_error": "failed",
                "logics": [
                    {
                        "type": "api_call",
                        "url": f"{server}/use",
                        "headers": {
                            "Authorization": "Bearer {{ access_token }}",
                            "X-Key": "{{ api_key }}/{{ nested.AuthToken }}",
                        },
                    },
                    {"type": "go", "to": "wait"},
                ],
            },
            "wait": {
                "kind": "wait",
                "logics": [
                    {"type": "wait_callback"},
                    {
                        "type": "condition",
                        "if": [{"param": "answer", "fun": "eq", "value": "yes"}],
                        "to": "ok",
                    },
                    {"type": "go", "to": "wait"},
                ],
            },
            "ok": {"kind": "success"},
            "failed": {"kind": "escalation"},
        },
    }


def _db_text(url: str) -> str:
    db = Database(url)
    with db.read() as conn:
        rows = [repr(tuple(r)) for t in metadata.sorted_tables for r in conn.execute(select(t))]
    db.dispose()
    return "\n".join(rows)


@pytest.fixture
def server() -> Iterator[str]:
    SEEN.clear()
    with run_app(APP) as url:
        yield url


def test_secret_names_sealed_on_every_store_path(db_url: str, server: str) -> None:
    planted = {n: f"{n.upper()}{secrets.token_hex(8)}" for n in ("key", "auth", "nested", "cb")}
    # The token server is on loopback, which api_call refuses unless allowed.
    with running_stack(db_url, api_call_allow="127.0.0.1") as s:
        s.deploy(process(server))
        task = s.create(
            {
                "api_key": planted["key"],
                "Authorization": planted["auth"],
                "nested": {"AuthToken": planted["nested"], "kept": 1},
                "items": [{"password": planted["nested"], "n": 2}],
            },
            ref="o1",
            process="oauth",
        )
        waiting = s.wait(task["task_id"], state="waiting")
        # The answer's token and the inputs' secrets were usable by the next call.
        assert SEEN == [f"Bearer {ACCESS}", f"{planted['key']}/{planted['nested']}"]
        r = s.client.patch(
            "/api/v1/processes/oauth/tasks/o1",
            json={"data": {"more": {"Authorization": planted["cb"], "x": 1}}},
        )
        assert r.status_code == 200, r.text
        s.wait(task["task_id"], state="waiting")
        httpx.post(
            s.callback_url("oauth", "json"),
            json={"ref": "o1", "answer": "yes", "reply": {"api_key": planted["cb"], "y": 2}},
        ).raise_for_status()
        done = s.wait(task["task_id"])
        assert done["outcome"] == "success"
        shown = waiting["data"]
        # Sealed values are not task data at all; a secret in a list is dropped.
        assert not {"api_key", "Authorization", "access_token"} & set(shown)
        assert shown["nested"] == {"kept": 1} and shown["items"] == [{"n": 2}]
        assert shown["token_type"] == "bearer" and shown["session"] == {}
        history = str(s.history(task["task_id"]))
        stored = _db_text(db_url)
    for value in (*planted.values(), ACCESS, DEEP):
        assert value not in stored
        assert value not in history
    assert SEALED in stored  # the inbox and effects kept them sealed


def test_the_rule() -> None:
    for name in (
        "AuthToken",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "Authorization",
        "access_token",
        "ApiKeySecret",
        "client_secret",
        "password",
        "private_key",
        "credentials",
    ):
        assert is_secret_name(name), name
    for name in ("ApiKeySid", "AccountSid", "Body", "token_type", "sid", "keys", "author"):
        assert not is_secret_name(name), name


def test_split_merge_seal_round_trip() -> None:
    data = {
        "a": 1,
        "n": {"AuthToken": "t", "b": {"api_key": "k", "c": 3}},
        "l": [{"password": "p"}],
    }
    plain, hidden = split(data)
    assert plain == {"a": 1, "n": {"b": {"c": 3}}, "l": [{}]}
    assert hidden == {"n": {"AuthToken": "t", "b": {"api_key": "k"}}}
    assert merge(hidden, plain) == {**data, "l": [{}]}
    assert redact(data)["n"] == {"AuthToken": REDACTED, "b": {"api_key": REDACTED, "c": 3}}
    vault = Vault("s" * 40)
    sealed = seal(vault, data)
    assert "t" not in str({k: v for k, v in sealed.items() if k != SEALED}) and SEALED in sealed
    assert unseal(vault, sealed) == {**data, "l": [{}]}


def test_corezoid_ops_go_through_the_same_rule(db_url: str) -> None:
    from test_corezoid import LOGIN, SECRET, signed_post

    planted = "COREZOID" + secrets.token_hex(8)
    with running_stack(db_url, api_keys=f"{LOGIN}:{SECRET}") as s:
        s.client.headers["Authorization"] = f"Bearer {SECRET}"
        s.deploy(
            {
                "slug": "cz",
                "title": "cz",
                "nodes": {
                    "start": {"kind": "start", "logics": [{"type": "go", "to": "wait"}]},
                    "wait": {
                        "kind": "wait",
                        "logics": [{"type": "wait_callback"}, {"type": "go", "to": "wait"}],
                    },
                    "failed": {"kind": "escalation"},
                },
            }
        )
        ops = [
            {
                "type": "create",
                "obj": "task",
                "conv_id": "cz",
                "ref": "c1",
                "data": {"creds": {"api_key": planted}, "Authorization": planted, "n": 1},
            }
        ]
        r = signed_post(s.api, {"ops": ops})
        assert r.json()["ops"][0]["proc"] == "ok", r.text
        task_id = r.json()["ops"][0]["obj_id"]
        assert s.wait(task_id, state="waiting")["data"] == {"creds": {}, "n": 1}
        stored = _db_text(db_url)
    assert planted not in stored, [line for line in stored.splitlines() if planted in line]
