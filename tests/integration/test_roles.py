"""Key roles (read / operate) on the API, the Corezoid API and the console; console
sessions that end at logout; login throttling."""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator.cli import main
from orchestrator.config import Settings
from orchestrator.http.app import create_app
from orchestrator.http.console.throttle import LoginThrottle
from orchestrator.services import apikeys

READER = "reader-secret-000000001"
OPERATOR = "operator-secret-0000001"
KEYS = f"viewer:{READER}:read,ops:{OPERATOR}"


def _client(db_url: str, **settings: Any) -> TestClient:
    app = create_app(Settings(database_url=db_url, secret="s" * 32, **settings), run_engine=False)
    return TestClient(app, client=("10.1.2.3", 50000), follow_redirects=False)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def _login(c: TestClient, secret: str) -> Any:
    return c.post(
        "/console/login", data={"csrf": _csrf(c.get("/console/login").text), "secret": secret}
    )


def test_env_roles_parse() -> None:
    assert apikeys.parse_env_roles(KEYS) == {"viewer": "read", "ops": "operate"}
    assert apikeys.parse_env_keys(KEYS) == {"viewer": READER, "ops": OPERATOR}
    # A secret may contain ':' as before; only a last ":read"/":operate" is a role.
    assert apikeys.parse_env_keys("a:x:y-0123456789abcdef") == {"a": "x:y-0123456789abcdef"}


def test_a_read_key_may_only_get(db_url: str) -> None:
    with _client(db_url, api_keys=KEYS) as c:
        read = {"Authorization": f"Bearer {READER}"}
        op = {"Authorization": f"Bearer {OPERATOR}"}
        assert c.get("/api/v1/processes", headers=read).status_code == 200
        body = {"data": {"Number_to": "+15551230001", "Body": "x"}}
        for method, path, payload in (
            ("POST", "/api/v1/processes/sending-sms/tasks", body),
            ("PATCH", "/api/v1/processes/sending-sms/tasks/r1", {"data": {"a": 1}}),
            ("POST", "/api/v1/processes", {"slug": "x"}),
            ("POST", "/api/v1/tasks/000000000000000000000000/cancel", {}),
            ("POST", "/api/v1/processes/sending-sms/nodes/api_error/retry", {}),
        ):
            r = c.request(method, path, json=payload, headers=read)
            assert r.status_code == 403, (path, r.text)
            assert r.json()["error"]["code"] == "FORBIDDEN"
        assert c.get("/api/v1/processes/sending-sms/tasks", headers=read).json()["tasks"] == []
        r = c.post("/api/v1/processes/sending-sms/tasks", json=body, headers=op)
        assert r.status_code == 201, r.text


def test_a_read_key_may_only_show_on_the_corezoid_api(db_url: str) -> None:
    with _client(db_url, api_keys=KEYS, corezoid_time_window=0) as c:

        def call(secret: str, ops: list[dict[str, Any]]) -> Any:
            raw = json.dumps({"ops": ops}).encode()
            t = str(int(time.time()))
            sig = hashlib.sha1((t + secret).encode() + raw + secret.encode()).hexdigest()
            login = "viewer" if secret == READER else "ops"
            return c.post(f"/api/1/json/{login}/{t}/{sig}", content=raw)

        create = {"type": "create", "conv_id": "sending-sms", "data": {"Body": "x"}}
        r = call(READER, [create])
        assert r.status_code == 403 and r.json()["request_proc"] == "access_denied"
        show = {"type": "show", "conv_id": "sending-sms", "ref": "nope"}
        assert call(READER, [show]).status_code == 200


def test_apikey_create_with_a_role(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["--database-url", db_url, "apikey", "create", "--login", "v", "--role", "read"]) == 0
    )
    out = capsys.readouterr().out
    secret = re.search(r"secret: (\S+)", out)
    assert secret and "role:   read" in out
    assert main(["--database-url", db_url, "apikey", "list"]) == 0
    assert re.search(r"v\s+database\s+read\s+active", capsys.readouterr().out)
    with _client(db_url) as c:
        bearer = {"Authorization": f"Bearer {secret.group(1)}"}
        assert c.get("/api/v1/processes", headers=bearer).status_code == 200
        r = c.post("/api/v1/processes", json={"slug": "x"}, headers=bearer)
        assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"


def test_console_hides_actions_from_a_read_key_and_refuses_them(db_url: str) -> None:
    with _client(db_url, api_keys=KEYS) as c:
        _login(c, READER)
        page = c.get("/console/processes/sending-sms")
        assert page.status_code == 200
        assert "New task" not in page.text and "/modify" not in page.text
        r = c.post(
            "/console/processes/sending-sms/new",
            data={"csrf": _csrf(page.text), "data": '{"Number_to": "+15551230001"}'},
        )
        assert r.status_code == 403 and "may only read" in r.text
        c.cookies.clear()
        _login(c, OPERATOR)
        assert "New task" in c.get("/console/processes/sending-sms").text


def test_logout_ends_the_session_for_every_copy_of_the_cookie(db_url: str) -> None:
    with _client(db_url, api_keys=KEYS) as c:
        assert _login(c, OPERATOR).status_code == 303
        cookie = dict(c.cookies)
        page = c.get("/console")
        assert page.status_code == 200
        assert c.post("/console/logout", data={"csrf": _csrf(page.text)}).status_code == 303
    with _client(db_url, api_keys=KEYS) as thief:  # the cookie as copied before logout
        for name, value in cookie.items():
            thief.cookies.set(name, value, path="/console")
        assert thief.get("/console").status_code == 303  # back to the login page


def test_login_attempts_are_throttled(db_url: str) -> None:
    with _client(db_url, api_keys=KEYS) as c:
        csrf = _csrf(c.get("/console/login").text)
        codes = [
            c.post("/console/login", data={"csrf": csrf, "secret": f"wrong{i}"}).status_code
            for i in range(8)
        ]
        assert codes[:5] == [200] * 5 and codes[5:] == [429] * 3
        # Even the right secret waits now.
        r = c.post("/console/login", data={"csrf": csrf, "secret": OPERATOR})
        assert r.status_code == 429 and "too many wrong secrets" in r.text


def test_throttle_window_passes() -> None:
    t = LoginThrottle(max_failures=2, window=10)
    t.failed("a", now=0)
    t.failed("a", now=1)
    assert t.wait_for("a", now=2) == 8 and t.wait_for("b", now=2) == 0
    assert t.wait_for("a", now=10.5) == 0
