"""Hostile requests: webhook URLs checked before their bodies are read, form field caps,
and text no database can store (NUL, lone surrogates) refused with a 4xx, never a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from orchestrator.config import Settings
from orchestrator.engine.deploy import ensure_shipped
from orchestrator.engine.runtime import Runtime
from orchestrator.http.app import create_app
from orchestrator.http.webhooks import MAX_FORM_FIELDS

KEY = "input-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class App:
    def __init__(self, rt: Runtime, app: Any) -> None:
        self.rt, self.app = rt, app

    def request(
        self, method: str, url: str, content: Any = b"", headers: dict[str, str] | None = None
    ) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://orch") as c:
                return await c.request(method, url, content=content, headers=headers or {})

        return asyncio.run(go())

    def urls(self) -> dict[str, str]:
        with self.rt.db.read() as conn:
            conv_id = self.rt.process(conn, "getting-callback").id
        base = self.rt.settings.public_url
        return {
            form: url.removeprefix(base)
            for form, url in self.rt.callback_urls(conv_id, "waiting_for_callback").items()
        }

    def callback_count(self) -> int:
        from sqlalchemy import func, select

        from orchestrator.store.tables import callbacks

        with self.rt.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(callbacks)).scalar_one())


@pytest.fixture
def app(db_url: str) -> Iterator[App]:
    settings = Settings(database_url=db_url, api_keys=f"in:{KEY}")
    rt = Runtime(settings)
    ensure_shipped(rt)
    rt.prepare()
    yield App(rt, create_app(settings, runtime=rt, run_engine=False))
    rt.db.dispose()


class Tracked:
    """A request body that records whether anyone read it."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.read = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.read = True
        yield self.body


def test_an_unknown_callback_url_is_refused_before_its_body_is_read(app: App) -> None:
    huge = b"&".join(b"k=" for _ in range(87_000))
    for form, url in app.urls().items():
        url = url.replace("{{root.task_id}}", "0" * 24)
        forged = url.replace(url.split("/")[6], "f" * 40)
        body = Tracked(huge if form != "json" else b'{"ref": "x"}')
        ctype = FORM if form != "json" else {"Content-Type": "application/json"}
        r = app.request("POST", forged, body, ctype)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", (form, r.text)
        assert not body.read, f"the {form} body was read before the URL was checked"
    assert app.callback_count() == 0


def test_form_callbacks_with_too_many_fields_are_refused(app: App) -> None:
    urls = app.urls()
    for url in (urls["twilio"], urls["nvp"].replace("{{root.task_id}}", "0" * 24)):
        at_cap = b"&".join(b"k%d=v" % i for i in range(MAX_FORM_FIELDS))
        r = app.request("POST", url, at_cap, FORM)
        assert r.status_code != 413, r.text  # within the cap: judged on its merits
        over = at_cap + b"&one=more"
        r = app.request("POST", url, over, FORM)
        assert r.status_code == 413 and r.json()["error"]["code"] == "TOO_MANY_FIELDS", r.text
    assert app.callback_count() == 0
