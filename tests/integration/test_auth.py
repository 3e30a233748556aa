"""API keys on /api/v1: required once any exists, accepted, revoked; loopback-only mode
without keys; keys from ORCH_API_KEYS; webhooks keep their own authentication."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from stack import running_stack
from test_api import WAITER

from orchestrator.cli import main
from orchestrator.config import Settings
from orchestrator.http.app import create_app
from orchestrator.services.apikeys import ApiKeyError, parse_env_keys
from orchestrator.store.db import Database
from orchestrator.store.tables import api_keys

ENV_SECRET = "env-secret-0123456789abcdef"


def cli(capsys: pytest.CaptureFixture[str], db: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", db, *args])
    out, err = capsys.readouterr()
    return code, out, err


def create_key(capsys: pytest.CaptureFixture[str], db: str, login: str) -> str:
    code, out, err = cli(capsys, db, "apikey", "create", "--login", login)
    assert code == 0, err
    lines = dict(line.split(":", 1) for line in out.strip().splitlines())
    assert lines["login"].strip() == login
    secret = lines["secret"].strip()
    assert len(secret) >= 40 and "shown only now" in err
    return secret


def _err(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_keys_required_accepted_and_revoked(
    db_url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    secret = create_key(capsys, db_url, "alice")
    bearer = {"Authorization": f"Bearer {secret}"}
    with caplog.at_level(logging.WARNING), running_stack(db_url) as s:
        assert "NO API KEY" not in caplog.text
        c = s.client
        before = s.counts()
        _err(c.get("/api/v1/processes"), 401, "UNAUTHORIZED")
        r = c.post("/api/v1/processes", json=WAITER)
        _err(r, 401, "UNAUTHORIZED")
        assert r.headers["www-authenticate"].startswith("Bearer")
        _err(
            c.get("/api/v1/processes", headers={"Authorization": "Bearer nope"}),
            401,
            "INVALID_API_KEY",
        )
        _err(
            c.get("/api/v1/processes", headers={"Authorization": f"Basic {secret}"}),
            401,
            "INVALID_API_KEY",
        )
        _err(c.get("/api/v1/openapi.json"), 401, "UNAUTHORIZED")
        assert s.counts() == before

        assert c.post("/api/v1/processes", json=WAITER, headers=bearer).status_code == 201
        r = c.post(
            "/api/v1/processes/waiter/tasks", json={"ref": "a1", "data": {"x": 1}}, headers=bearer
        )
        assert r.status_code == 201
        task_id = r.json()["task_id"]
        history = c.get(f"/api/v1/tasks/{task_id}/history", headers=bearer).json()["events"]
        assert history[0]["detail"]["by"] == "api:alice@127.0.0.1"

        # The webhooks do not take API keys: the per-node hash is their authentication.
        nodes = c.get("/api/v1/processes/waiter", headers=bearer).json()["nodes"]
        json_url = next(n for n in nodes if n["id"] == "wait")["callback_urls"]["json"]
        r = httpx.post(json_url, json={"ref": "a1", "answer": "yes"})
        assert r.status_code == 200 and r.json()["status"] == "accepted"
        bad = json_url.rsplit("/", 1)[0] + "/" + "0" * 40
        assert httpx.post(bad, json={"ref": "a1"}).status_code == 404

        code, out, _ = cli(capsys, db_url, "apikey", "list")
        assert code == 0 and "alice" in out and "active" in out and secret not in out
        code, _, err = cli(capsys, db_url, "apikey", "revoke", "alice")
        assert code == 0 and "no active API key is left" in err
        after_revoke = s.counts()
        # Revocation through this process (the CLI here) takes effect on the next request;
        # from another one within apikeys.KEY_CACHE_SECONDS (see the test below).
        _err(c.get("/api/v1/processes", headers=bearer), 401, "INVALID_API_KEY")
        code, out, _ = cli(capsys, db_url, "apikey", "list")
        assert "revoked" in out
        code, _, err = cli(capsys, db_url, "apikey", "revoke", "alice")
        assert code == 1 and "already revoked" in err
        # No active key left: closed to everyone, never back to loopback-only mode.
        _err(c.get("/api/v1/processes"), 401, "UNAUTHORIZED")
        assert s.counts() == after_revoke
        new_secret = create_key(capsys, db_url, "carol")
        assert (
            c.get(
                "/api/v1/processes", headers={"Authorization": f"Bearer {new_secret}"}
            ).status_code
            == 200
        )


def test_key_secrets_are_stored_hashed(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    secret = create_key(capsys, sqlite_url, "bob")
    db = Database(sqlite_url)
    with db.read() as conn:
        row = conn.execute(select(api_keys)).one()
    db.dispose()
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in row.secret_encrypted
    raw = Path(sqlite_url.removeprefix("sqlite:///")).read_bytes()
    assert secret.encode() not in raw
    code, _, err = cli(capsys, sqlite_url, "apikey", "create", "--login", "bob")
    assert code == 1 and "taken" in err
    for bad in ("callback", "has space", "-lead", "x" * 65):
        code, _, err = cli(capsys, sqlite_url, "apikey", "create", f"--login={bad}")
        assert code == 1 and "login" in err
    code, _, err = cli(capsys, sqlite_url, "apikey", "revoke", "nobody")
    assert code == 1 and "no API key" in err


def test_loopback_only_without_keys(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), running_stack(db_url) as s:
        assert "NO API KEY IS CONFIGURED" in caplog.text
        assert s.client.get("/api/v1/processes").status_code == 200
        before = s.counts()
        # A request a local reverse proxy forwarded is not a loopback client's.
        r = s.client.post(
            "/api/v1/processes/sending-sms/tasks",
            json={"data": {"a": 1}},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        _err(r, 403, "LOOPBACK_ONLY")
        assert s.counts() == before
        # A bearer token that matches no key is refused even in this mode.
        r = s.client.get("/api/v1/processes", headers={"Authorization": "Bearer guess"})
        _err(r, 401, "INVALID_API_KEY")


def _asgi_get(app: Any, client: tuple[str, int], path: str, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://orch") as c:
            return await c.get(path, **kw)

    return asyncio.run(go())


def test_remote_clients_need_a_key(sqlite_url: str) -> None:
    open_app = create_app(Settings(database_url=sqlite_url), run_engine=False)
    _err(_asgi_get(open_app, ("203.0.113.5", 4000), "/api/v1/processes"), 403, "LOOPBACK_ONLY")
    assert _asgi_get(open_app, ("127.0.0.1", 4000), "/api/v1/processes").status_code == 200
    assert _asgi_get(open_app, ("::1", 4000), "/api/v1/processes").status_code == 200
    assert _asgi_get(open_app, ("::ffff:127.0.0.1", 1), "/api/v1/processes").status_code == 200
    for peer in ("localhost", "", "::ffff:203.0.113.5", "10.0.0.1"):
        _err(_asgi_get(open_app, (peer, 4000), "/api/v1/processes"), 403, "LOOPBACK_ONLY")
    # A request some proxy forwarded is not a loopback client's, whatever the peer (even
    # where nothing put the forwarded address in the scope's client).
    for name in ("Forwarded", "X-Forwarded-For", "x-real-ip"):
        r = _asgi_get(open_app, ("127.0.0.1", 1), "/api/v1/processes", headers={name: "x"})
        _err(r, 403, "LOOPBACK_ONLY")
    # Health checks stay open (a load balancer has no key).
    assert _asgi_get(open_app, ("203.0.113.5", 4000), "/healthz").status_code == 200
    # Paths under the protected prefixes, and the prefixes themselves; not look-alikes.
    remote = ("203.0.113.5", 4000)
    for path in ("/api/v1", "/api/v1/", "/api/twilio", "/api/twilio/x", "/api/v1/nope"):
        _err(_asgi_get(open_app, remote, path), 403, "LOOPBACK_ONLY")
    for path in ("/api/v10", "/api/twilios"):
        assert _asgi_get(open_app, remote, path).status_code == 404

    keyed = create_app(
        Settings(database_url=sqlite_url, api_keys=f"ops:{ENV_SECRET}"), run_engine=False
    )
    remote = ("203.0.113.5", 4000)
    _err(_asgi_get(keyed, remote, "/api/v1/processes"), 401, "UNAUTHORIZED")
    auth = {"Authorization": f"Bearer {ENV_SECRET}"}
    assert _asgi_get(keyed, remote, "/api/v1/processes", headers=auth).status_code == 200
    # With keys, loopback callers need one too.
    _err(_asgi_get(keyed, ("127.0.0.1", 1), "/api/v1/processes"), 401, "UNAUTHORIZED")
    for header in (f"bearer {ENV_SECRET}", f"BEARER   {ENV_SECRET}  "):
        r = _asgi_get(keyed, remote, "/api/v1/processes", headers={"Authorization": header})
        assert r.status_code == 200
    for header in (f"Basic {ENV_SECRET}", "Bearer", "Bearer wrong", ENV_SECRET):
        r = _asgi_get(keyed, remote, "/api/v1/processes", headers={"Authorization": header})
        _err(r, 401, "INVALID_API_KEY")


def test_env_keys(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parse_env_keys(f"a:{ENV_SECRET}, b:{ENV_SECRET}x") == {
        "a": ENV_SECRET,
        "b": ENV_SECRET + "x",
    }
    for bad, why in (
        ("nocolon", "login:secret"),
        ("a:short", "shorter"),
        (f"a:{ENV_SECRET},a:{ENV_SECRET}", "twice"),
        (f"callback:{ENV_SECRET}", "reserved"),
    ):
        with pytest.raises(ApiKeyError, match=why) as info:
            create_app(Settings(database_url=sqlite_url, api_keys=bad), run_engine=False)
        assert ENV_SECRET not in str(info.value)
    monkeypatch.setenv("ORCH_API_KEYS", f"envkey:{ENV_SECRET}")
    code, out, _ = cli(capsys, sqlite_url, "apikey", "list")
    assert code == 0 and "envkey" in out and "environment" in out and ENV_SECRET not in out
    code, _, err = cli(capsys, sqlite_url, "apikey", "revoke", "envkey")
    assert code == 1 and "ORCH_API_KEYS" in err
    assert cli(capsys, sqlite_url, "apikey", "create", "--login", "envkey")[0] == 1


def test_key_answers_are_cached_briefly_and_a_revoke_elsewhere_lands_within_that(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import update

    from orchestrator.engine.runtime import Runtime
    from orchestrator.services import apikeys
    from orchestrator.store import apikeys as key_store

    rt = Runtime(Settings(database_url=db_url))
    lookups: list[str] = []
    real_find = key_store.find_by_hash
    real_any = key_store.any_created
    monkeypatch.setattr(
        key_store, "find_by_hash", lambda c, h: lookups.append(h) or real_find(c, h)
    )
    monkeypatch.setattr(key_store, "any_created", lambda c: lookups.append("any") or real_any(c))
    monkeypatch.setattr(apikeys, "KEY_CACHE_SECONDS", 3600.0)
    try:
        assert apikeys.any_key(rt) is False
        login, secret = apikeys.create_key(rt, "dave")  # created here: seen at once
        assert apikeys.any_key(rt) is True
        for _ in range(5):
            assert apikeys.key_for_secret(rt, secret) == ("dave", apikeys.OPERATE)
        assert lookups.count("any") == 2 and len(lookups) == 3  # one lookup of the secret
        assert apikeys.key_for_secret(rt, "wrong") is None
        assert apikeys.key_for_secret(rt, "wrong") is None
        assert len(lookups) == 5  # unknown secrets are not cached

        # Revoked by another process (written straight to the table): this one keeps
        # the cached answer until it is KEY_CACHE_SECONDS old, then refuses the key.
        with rt.db.write() as conn:
            conn.execute(update(api_keys).values(revoked_at=1.0))
        assert apikeys.key_for_secret(rt, secret) == ("dave", apikeys.OPERATE)
        monkeypatch.setattr(apikeys, "KEY_CACHE_SECONDS", 0.0)
        assert apikeys.key_for_secret(rt, secret) is None
        monkeypatch.setattr(apikeys, "KEY_CACHE_SECONDS", 3600.0)

        # Revoked through this process: refused at once.
        _login2, secret2 = apikeys.create_key(rt, "erin")
        assert apikeys.key_for_secret(rt, secret2) == ("erin", apikeys.OPERATE)
        apikeys.revoke_key(rt, "erin")
        assert apikeys.key_for_secret(rt, secret2) is None
    finally:
        apikeys._cache.clear()
        rt.db.dispose()


def test_api_asks_the_database_only_for_what_is_not_cached(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Access answers a known key (or whether keys exist) on the event loop, without a
    hop to where database work runs; a revoke through this process still lands at once."""
    from orchestrator.engine.runtime import Runtime
    from orchestrator.services import apikeys
    from orchestrator.services.access import Access

    rt = Runtime(Settings(database_url=sqlite_url))
    access = Access(rt)
    hops: list[str] = []

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(fn.__name__)
        return fn(*args, **kwargs)

    monkeypatch.setattr(rt, "run_db", counted)
    monkeypatch.setattr(apikeys, "KEY_CACHE_SECONDS", 3600.0)

    async def main() -> None:
        assert await access.keys_configured() is False
        _login, secret = apikeys.create_key(rt, "frank")
        for _ in range(3):
            assert await access.keys_configured() is True
            assert await access.key_for_secret(secret) == ("frank", apikeys.OPERATE)
        assert hops == ["any_key", "any_key", "key_for_secret"]
        for _ in range(2):
            assert await access.key_for_secret("wrong") is None  # never cached
        assert hops[3:] == ["key_for_secret"] * 2
        apikeys.revoke_key(rt, "frank")
        assert await access.key_for_secret(secret) is None

    try:
        asyncio.run(main())
    finally:
        apikeys._cache.clear()
        rt.db.dispose()
