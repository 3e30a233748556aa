"""The app's router remembers each path's route (http/routing.py) and answers every
request exactly as Starlette's own router does, the first time and the next."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.routing import Route, Router

from orchestrator.config import Settings
from orchestrator.http import routing
from orchestrator.http.app import create_app

REQUESTS = [
    ("GET", "/healthz"),
    ("GET", "/healthz/"),  # a redirect to the route without the slash
    ("POST", "/healthz"),  # 405
    ("GET", "/nope"),
    ("GET", "/api/v1/processes"),
    ("GET", "/api/v1/processes/"),
    ("GET", "/api/v1/processes/sending-sms"),
    ("GET", "/api/v1/processes/other-one"),
    ("GET", "/api/v1/tasks/abc"),
    ("GET", "/api/v1/tasks/def"),
    ("DELETE", "/api/v1/tasks/abc"),
    ("POST", "/api/1/json/plugins/twilio/5/" + "a" * 40),
    ("POST", "/api/1/json/plugins/twilio/6/" + "b" * 40),
    ("GET", "/api/1/json/plugins/twilio/5/" + "a" * 40),
    ("POST", "/api/1/json/callback/5/" + "c" * 40),
    ("POST", "/api/1/nvp/callback/5/" + "c" * 40 + "/t1"),
    ("GET", "/console/static/nothing.css"),
    ("GET", "/console/api"),
    ("GET", "/api/1/json/alice/123/sig"),
]


def _answers(app: Any) -> list[tuple[int, str, bytes]]:
    async def go() -> list[tuple[int, str, bytes]]:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        out = []
        async with httpx.AsyncClient(transport=transport, base_url="http://orch") as c:
            for _round in range(2):
                for method, path in REQUESTS:
                    r = await c.request(method, path, content=b"a=1", headers=_form())
                    out.append((r.status_code, r.headers.get("location", ""), r.content))
        return out

    return asyncio.run(go())


def _form() -> dict[str, str]:
    return {"content-type": "application/x-www-form-urlencoded"}


def test_memo_router_answers_as_starlette(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(database_url=sqlite_url)
    memo = create_app(settings, run_engine=False)
    assert isinstance(memo.router, routing.MemoRouter)
    plain = create_app(settings, run_engine=False)
    plain.router = Router(plain.router.routes)
    expected = _answers(plain)
    assert len({status for status, _, _ in expected}) >= 4  # 200s, 404s, 405s, redirects
    assert _answers(memo) == expected


def test_a_remembered_path_is_matched_once(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(Settings(database_url=sqlite_url), run_engine=False)
    calls: list[str] = []
    real = Route.matches

    def counted(self: Route, scope: Any) -> Any:
        calls.append(self.path)
        return real(self, scope)

    monkeypatch.setattr(Route, "matches", counted)
    path = "/api/1/json/plugins/twilio/5/" + "a" * 40

    async def go() -> None:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://orch") as c:
            for _ in range(3):
                calls.clear()
                await c.post(path, content=b"a=1", headers=_form())
        assert calls == ["/api/1/json/plugins/twilio/{conv_id}/{hash}"]

    asyncio.run(go())
