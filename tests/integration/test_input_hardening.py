"""Hostile requests: webhook URLs checked before their bodies are read, form field caps,
and text no database can store (NUL, lone surrogates) refused with a 4xx, never a 500."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import func, select

from orchestrator.config import Settings
from orchestrator.engine.runtime import Runtime
from orchestrator.http.app import create_app
from orchestrator.http.webhooks import MAX_FORM_FIELDS
from orchestrator.services.deploy import ensure_shipped
from orchestrator.store.tables import callbacks
from orchestrator.store.tables import tasks as tasks_table
from orchestrator.twilio.signature import compute_signature

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


ACCOUNT = "AC" + "c" * 32
TOKEN = "input-auth-token"


@pytest.fixture
def signed_app(db_url: str) -> Iterator[App]:
    settings = Settings(
        database_url=db_url,
        api_keys=f"in:{KEY}",
        twilio_account_sid=ACCOUNT,
        twilio_auth_token=TOKEN,
    )
    rt = Runtime(settings)
    ensure_shipped(rt)
    rt.prepare()
    yield App(rt, create_app(settings, runtime=rt, run_engine=False))
    rt.db.dispose()


def _corezoid(app: App, ops: list[dict[str, Any]], login: str = "in") -> httpx.Response:
    body = json.dumps({"ops": ops}).encode()
    at = str(int(time.time()))
    sig = hashlib.sha1((at + KEY).encode() + body + KEY.encode()).hexdigest()
    return app.request("POST", f"/api/2/json/{login}/{at}/{sig}", body)


URL_DECODED = {
    "task id path",
    "history path",
    "PATCH ref",
    "list ref=",
    "list node=",
    "process name",
    "corezoid login",
    "NVP task id",
}


@pytest.mark.parametrize("bad", ["\x00", "\ud800", "\udfff"])
def test_unstorable_text_is_a_4xx_everywhere(signed_app: App, bad: str) -> None:
    """A NUL (PostgreSQL refuses it) or a lone surrogate (no UTF-8 for it) anywhere a
    request can put text: a named 4xx on both databases, nothing stored."""
    app = signed_app
    escaped = json.dumps(bad)[1:-1]  # the JSON escape: \\u0000, \\ud800
    quoted = "%00" if bad == "\x00" else "%ED%A0%80"
    tasks = "/api/v1/processes/sending-sms/tasks"
    json_ct = {"Content-Type": "application/json", **AUTH}

    def body(template: str) -> bytes:
        return template.replace("BAD", escaped).encode()

    data_answers = {
        "data value": app.request("POST", tasks, body('{"data": {"a": "xBADy"}}'), json_ct),
        "data key": app.request("POST", tasks, body('{"data": {"kBAD": 1}}'), json_ct),
    }
    if bad == "\x00":  # task data is stored as JSON text, where a NUL is an escape: kept
        for r in data_answers.values():
            assert r.status_code == 201, r.text
            again = app.request("GET", f"/api/v1/tasks/{r.json()['task_id']}", headers=AUTH)
            assert again.json()["data"] == r.json()["data"]
        data_answers = {}
    answers = {
        **data_answers,
        "ref": app.request("POST", tasks, body('{"ref": "rBAD", "data": {}}'), json_ct),
        "task id path": app.request("GET", f"/api/v1/tasks/ab{quoted}cd", headers=AUTH),
        "history path": app.request("GET", f"/api/v1/tasks/ab{quoted}/history", headers=AUTH),
        "PATCH ref": app.request(
            "PATCH", f"{tasks}/r{quoted}", body('{"data": {"a": 1}}'), json_ct
        ),
        "list ref=": app.request("GET", f"{tasks}?ref=r{quoted}", headers=AUTH),
        "list node=": app.request("GET", f"{tasks}?node=n{quoted}", headers=AUTH),
        "process name": app.request("GET", f"/api/v1/processes/p{quoted}", headers=AUTH),
        "corezoid login": app.request("POST", f"/api/2/json/l{quoted}/1/{'0' * 40}", b"{}"),
    }
    urls = app.urls()
    for name, fields in (("ref", '{"ref": "rBAD"}'), ("task_id", '{"task_id": "tBAD"}')):
        r = app.request("POST", urls["json"], body(fields), {"Content-Type": "application/json"})
        answers[f"JSON callback {name}"] = r
    nvp = urls["nvp"].replace("{{root.task_id}}", f"ab{quoted}cd")
    answers["NVP task id"] = app.request("POST", nvp, b"a=1", FORM)
    if bad == "\x00":  # a form is decoded with replacement characters: no surrogates
        url = app.rt.settings.public_url + urls["twilio"]
        params = {"AccountSid": ACCOUNT, "MessageSid": "SM1\x00", "MessageStatus": "sent"}
        signed = {"X-Twilio-Signature": compute_signature(url, params, TOKEN), **FORM}
        answers["Twilio sid"] = app.request("POST", urls["twilio"], urlencode(params), signed)
    for name, r in answers.items():
        if bad != "\x00" and name in URL_DECODED:
            # A URL's bytes are decoded with replacement characters: no surrogate survives.
            assert r.status_code < 500, (name, r.text)
            continue
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        code = r.json()["error"]["code"]
        if bad == "\x00":
            assert code == "INVALID_INPUT", (name, r.text)
        else:
            assert code == "MALFORMED_JSON" and "surrogate" in r.text, (name, r.text)
    # The Corezoid API answers per op (200); no op may fail the package.
    r = _corezoid(
        app,
        [
            {
                "type": "create",
                "obj": "task",
                "conv_id": "sending-sms",
                "ref": f"r{bad}",
                "data": {},
            },
            {
                "type": "modify",
                "obj": "task",
                "conv_id": "sending-sms",
                "ref": f"r{bad}",
                "data": {"a": 1},
            },
            {"type": "show", "obj": "task", "conv_id": f"c{bad}", "ref": "r"},
            {"type": "show", "obj": "task", "conv_id": "sending-sms", "obj_id": f"o{bad}"},
        ],
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    if bad == "\x00":
        assert answer["request_proc"] == "ok" and len(answer["ops"]) == 4, answer
        assert all(op["proc"] != "ok" for op in answer["ops"]), answer
    else:  # the package's JSON itself is refused
        assert answer["request_proc"] == "format_error", answer
    assert app.callback_count() == 0
    with app.rt.db.read() as conn:
        stored = conn.execute(select(func.count()).select_from(tasks_table)).scalar_one()
    assert stored == (2 if bad == "\x00" else 0)
