"""Console routes through Starlette's TestClient (no engine): access rules, sessions and
CSRF, forms changing nothing when refused, search, paging, redaction, the SVG graph."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator.config import Settings
from orchestrator.engine.runtime import new_task_id
from orchestrator.http.app import create_app
from orchestrator.http.console import graph
from orchestrator.http.console import session as sessions
from orchestrator.services import apikeys
from orchestrator.services.tasks import Service
from orchestrator.store import tasks as task_store
from orchestrator.store.records import TaskRecord

LOCAL = ("127.0.0.1", 50000)
REMOTE = ("10.1.2.3", 50000)
KEYS = "ops:key-one-secret-0001,audit:key-two-secret-0002"


def _client(db_url: str, client: tuple[str, int] = LOCAL, **settings: Any) -> TestClient:
    app = create_app(Settings(database_url=db_url, secret="s" * 32, **settings), run_engine=False)
    return TestClient(app, client=client, follow_redirects=False)


@pytest.fixture
def local(db_url: str) -> Iterator[TestClient]:
    with _client(db_url) as c:
        yield c


def _service(c: TestClient) -> Service:
    service: Service = c.app.state.service  # type: ignore[attr-defined]
    return service


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the form"
    return found.group(1)


def _tasks(c: TestClient) -> int:
    listing = asyncio.run(_service(c).list_tasks("sending-sms", limit=500))
    return len(listing["tasks"])


def test_without_keys_only_loopback_clients_get_in(db_url: str) -> None:
    with _client(db_url, REMOTE) as remote:
        r = remote.get("/console")
        assert r.status_code == 403 and "loopback" in r.text
        assert remote.get("/console/processes/sending-sms/counts.json").status_code == 403
    with _client(db_url) as local:
        assert local.get("/").headers["location"] == "/console"
        r = local.get("/console")
        assert r.status_code == 200 and "Sending SMS" in r.text
        assert "default-src 'self'" in r.headers["content-security-policy"]
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie


def test_with_keys_a_login_is_needed_and_the_session_is_signed(db_url: str) -> None:
    with _client(db_url, REMOTE, api_keys=KEYS) as c:
        r = c.get("/console/processes/sending-sms")
        assert r.status_code == 303
        assert r.headers["location"] == "/console/login?next=%2Fconsole%2Fprocesses%2Fsending-sms"
        form = c.get("/console/login")
        csrf = _csrf(form.text)
        bad = c.post("/console/login", data={"csrf": csrf, "secret": "nope"})
        assert bad.status_code == 200 and "no active API key has this secret" in bad.text
        no_csrf = c.post("/console/login", data={"secret": "key-one-secret-0001"})
        assert no_csrf.status_code == 403
        assert c.get("/console").status_code == 303  # still not logged in
        ok = c.post(
            "/console/login",
            data={"csrf": csrf, "secret": "key-one-secret-0001", "next": "//evil.example/x"},
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/console"
        assert "key-one-secret-0001" not in ok.headers["set-cookie"]
        page = c.get("/console")
        assert page.status_code == 200 and ">ops<" in page.text
        # A tampered cookie is no session at all.
        value = c.cookies.get(sessions.COOKIE)
        assert value
        c.cookies.set(sessions.COOKIE, value[:-2] + "00", path="/console")
        assert c.get("/console").status_code == 303


def test_session_cookies_expire_and_cannot_be_forged() -> None:
    s = sessions.new_session("ops")
    value = sessions.encode("secret-a", s)
    assert sessions.decode("secret-a", value) == s
    assert sessions.decode("secret-b", value) is None  # another server secret
    assert sessions.decode("secret-a", value, now=s.expires + 1) is None
    body, sig = value.rsplit(".", 1)
    forged = sessions.encode("secret-a", sessions.Session("admin", s.csrf, s.expires))
    assert sessions.decode("secret-a", forged.rsplit(".", 1)[0] + "." + sig) is None
    assert sessions.decode("secret-a", "garbage") is None


def test_logout_needs_the_csrf_token_and_clears_the_cookie(db_url: str) -> None:
    with _client(db_url, api_keys=KEYS) as c:
        csrf = _csrf(c.get("/console/login").text)
        c.post("/console/login", data={"csrf": csrf, "secret": "key-two-secret-0002"})
        page = c.get("/console")
        assert ">audit<" in page.text
        assert c.post("/console/logout", data={"csrf": "wrong"}).status_code == 403
        assert c.get("/console").status_code == 200
        out = c.post("/console/logout", data={"csrf": _csrf(page.text)})
        assert out.status_code == 303 and out.headers["location"] == "/console/login"
        assert 'orch_console=""' in out.headers["set-cookie"]


def test_revoking_a_key_ends_its_console_sessions(db_url: str) -> None:
    with _client(db_url) as c:
        rt = _service(c).rt
        login, secret = apikeys.create_key(rt, "night-shift")
        csrf = _csrf(c.get("/console/login").text)
        c.post("/console/login", data={"csrf": csrf, "secret": secret})
        assert ">night-shift<" in c.get("/console").text
        apikeys.create_key(rt, "day-shift")  # keys stay configured after the revoke
        apikeys.revoke_key(rt, login)
        again = c.get("/console")
        assert again.status_code == 303
        assert again.headers["location"].startswith("/console/login")


def test_new_task_form_refusals_change_nothing(local: TestClient) -> None:
    form = local.get("/console/processes/sending-sms/new")
    assert form.status_code == 200 and 'name="in_Number_to"' in form.text
    csrf = _csrf(form.text)
    assert (
        local.post("/console/processes/sending-sms/new", data={"in_Body": "x"}).status_code == 403
    )
    missing = local.post(
        "/console/processes/sending-sms/new",
        data={"csrf": csrf, "in_Number_to": "+15551230001", "in_AuthToken": "tok-SECRET-1"},
    )
    assert 'id="in_Body-error">Body is required' in missing.text
    assert "tok-SECRET-1" not in missing.text  # a typed secret is never sent back
    bad_json = local.post(
        "/console/processes/sending-sms/new", data={"csrf": csrf, "data": '{"Body": '}
    )
    assert 'id="data-error">not valid JSON' in bad_json.text
    not_object = local.post(
        "/console/processes/sending-sms/new", data={"csrf": csrf, "data": "[1]"}
    )
    assert 'id="data-error">must be a JSON object' in not_object.text
    # Python reads NaN; stored, it made every later answer about the process a 500.
    nan = local.post(
        "/console/processes/sending-sms/new", data={"csrf": csrf, "data": '{"Body": NaN}'}
    )
    assert 'id="data-error">not valid JSON: NaN is not JSON' in nan.text
    deep = local.post(
        "/console/processes/sending-sms/new",
        data={"csrf": csrf, "data": '{"a": ' + "[" * 900 + "]" * 900 + "}"},
    )
    assert "nested deeper than 100 levels" in deep.text
    long_ref = local.post(
        "/console/processes/sending-sms/new",
        data={"csrf": csrf, "ref": "r" * 300, "data": '{"Body": "x"}'},
    )
    assert 'id="ref-error">ref must be a string of 1-255 characters' in long_ref.text
    assert _tasks(local) == 0


def test_new_task_form_creates_from_fields_or_raw_json(local: TestClient) -> None:
    csrf = _csrf(local.get("/console/processes/sending-sms/new").text)
    r = local.post(
        "/console/processes/sending-sms/new",
        data={
            "csrf": csrf,
            "ref": "f-1",
            "in_Number_to": "+15551230001",
            "in_Body": "hi",
            "in_MediaUrl": '["https://example.com/a.png"]',
            "in_AuthToken": "tok-SECRET-2",
        },
    )
    assert r.status_code == 303
    task_id = r.headers["location"].rsplit("/", 1)[1]
    task = asyncio.run(_service(local).get_task(task_id))
    assert task["ref"] == "f-1"
    assert task["data"]["MediaUrl"] == ["https://example.com/a.png"]
    assert "AuthToken" not in task["data"]
    page = local.get(f"/console/tasks/{task_id}")
    assert page.status_code == 200 and "tok-SECRET-2" not in page.text
    raw = local.post(
        "/console/processes/sending-sms/new",
        data={"csrf": csrf, "data": '{"Number_to": "+15551230002", "Body": "raw"}'},
    )
    assert raw.status_code == 303
    dup = local.post(
        "/console/processes/sending-sms/new",
        data={"csrf": csrf, "ref": "f-1", "data": '{"Body": "other"}'},
    )
    assert 'id="ref-error">' in dup.text and "unfinished task" in dup.text
    assert _tasks(local) == 2


def test_modify_form_errors_sit_beside_their_fields(local: TestClient) -> None:
    asyncio.run(_service(local).create_task("sending-sms", "m-1", {"Body": "x"}))  # not waiting
    csrf = _csrf(local.get("/console/processes/sending-sms/modify?ref=m-1").text)
    empty = local.post("/console/processes/sending-sms/modify", data={"csrf": csrf, "data": "{}"})
    assert 'id="ref-error">ref is required' in empty.text
    not_waiting = local.post(
        "/console/processes/sending-sms/modify",
        data={"csrf": csrf, "ref": "m-1", "data": '{"a": 1}'},
    )
    assert 'id="ref-error">' in not_waiting.text and "not waiting" in not_waiting.text
    none = local.post(
        "/console/processes/sending-sms/modify",
        data={"csrf": csrf, "ref": "m-1", "data": "{}"},
    )
    assert 'id="data-error">data must be a non-empty JSON object' in none.text


def _insert(c: TestClient, **fields: Any) -> TaskRecord:
    service = _service(c)
    with service.rt.db.write() as conn:
        proc = service.rt.process(conn, fields.pop("process", "sending-sms"))
        now = fields.pop("at", time.time())
        task = TaskRecord(
            id=new_task_id(),
            process_id=proc.id,
            version_id=proc.version_id,
            node_id=fields.pop("node_id", "start"),
            state=fields.pop("state", "active"),
            data=fields.pop("data", {}),
            created_at=now,
            updated_at=now,
            **fields,
        )
        task_store.insert_task(conn, task)
    return task


def test_search_by_task_id_ref_sid_and_phone(local: TestClient) -> None:
    sid = "SM" + "ab12" * 8
    original = _insert(local, data={"Number_to": "+15551239876", "sid": sid}, ref="order-9")
    copy = _insert(
        local, process="getting-callback", ref=sid, parent_task_id=original.id, data={"sid": sid}
    )
    _insert(local, data={"Number_to": "+15551239877"})  # a near miss: not found
    r = local.get(f"/console/search?q={original.id}")
    assert r.status_code == 303 and r.headers["location"] == f"/console/tasks/{original.id}"
    assert local.get("/console/search?q=order-9").headers["location"].endswith(original.id)
    both = local.get(f"/console/search?q={sid}")
    assert both.status_code == 200 and original.id in both.text and copy.id in both.text
    assert "message sid" in both.text
    phone = local.get("/console/search", params={"q": "+1 555 123 9876"})
    assert phone.headers["location"].endswith(original.id)
    nothing = local.get("/console/search?q=no-such-thing")
    assert nothing.status_code == 200 and "0 tasks" in nothing.text


def test_node_tasks_are_paged_newest_first(local: TestClient) -> None:
    base = time.time() - 100
    ids = [_insert(local, at=base + i).id for i in range(30)]
    first = local.get("/console/processes/sending-sms/nodes/start")
    assert first.status_code == 200
    shown = re.findall(r'href="/console/tasks/([0-9a-f]{24})"', first.text)
    assert shown == ids[::-1][:25]
    older = re.search(r'rel="next" href="([^"]+)"', first.text)
    assert older
    second = local.get(older.group(1).replace("&amp;", "&"))
    assert re.findall(r'href="/console/tasks/([0-9a-f]{24})"', second.text) == ids[::-1][25:]
    assert 'rel="next"' not in second.text
    counts = local.get("/console/processes/sending-sms/counts.json").json()
    assert counts["nodes"]["start"] == 30 and counts["counts"]["active"] == 30
    assert local.get("/console/processes/sending-sms/nodes/nope").status_code == 404
    assert local.get("/console/processes/nope").status_code == 404
    assert local.get(f"/console/tasks/{'0' * 24}").status_code == 404


def test_the_graph_draws_every_node_and_link_coloured_by_kind() -> None:
    nodes = [
        {"id": "start", "title": "Start", "kind": "start", "count": 0, "exits": ["w"]},
        {
            "id": "w",
            "title": "Wait <here>",
            "kind": "wait",
            "count": 7,
            "exits": ["w", "ok", "bad"],
        },
        {"id": "ok", "title": "Done", "kind": "success", "count": 3, "exits": []},
        {"id": "bad", "title": "Escalated", "kind": "escalation", "count": 1, "exits": []},
    ]
    svg = str(graph.render("p", nodes))
    assert svg.startswith("<svg") and svg.count('class="node ') == 4
    assert svg.count('class="link"') == 4  # start→w, w→w, w→ok, w→bad
    assert 'class="node kind-success"' in svg and 'class="node kind-escalation"' in svg
    assert 'data-count-for="w">7<' in svg
    assert "Wait &lt;here&gt;" in svg and "<here>" not in svg
    assert 'href="/console/processes/p/nodes/ok"' in svg


def test_task_data_cannot_inject_markup_or_script_links(local: TestClient) -> None:
    task = _insert(
        local,
        data={
            "code": "X",
            "message": "<script>alert(1)</script>",
            "url_more_info": "javascript:alert(1)",
            "api_secret": "hidden-value-1",
        },
    )
    page = local.get(f"/console/tasks/{task.id}")
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;" in page.text
    assert 'href="javascript:' not in page.text
    assert "hidden-value-1" not in page.text
