"""Secrets at rest: a planted auth token is used (the round trip succeeds) yet appears in
no log line, no response and no stored row; rotation of ORCH_SECRET keeps every stored
secret and callback URL working."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from stack import ACCOUNT, FROM, running_stack
from test_api import WAITER

from orchestrator.config import Settings
from orchestrator.engine.runtime import Runtime
from orchestrator.secretdata import SEALED, seal, unseal
from orchestrator.services import apikeys
from orchestrator.services.rotation import rotate
from orchestrator.services.tasks import Service
from orchestrator.store import effects as effect_store
from orchestrator.store import kv
from orchestrator.store.db import Database
from orchestrator.store.tables import callbacks, effects, metadata
from orchestrator.twilio.context import twilio_of
from orchestrator.twilio.simulator import SimulatorConfig

KEY = "scan-api-key-0123456789"


def _db_text(url: str) -> str:
    db = Database(url)
    parts = []
    with db.read() as conn:
        for table in metadata.sorted_tables:
            parts += [repr(tuple(row)) for row in conn.execute(select(table))]
    db.dispose()
    return "\n".join(parts)


def test_planted_token_never_leaks(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    planted = "PLANTED" + secrets.token_hex(12)
    basic = base64.b64encode(f"{ACCOUNT}:{planted}".encode()).decode()
    sim = SimulatorConfig(account_sid=ACCOUNT, auth_token=planted, callback_delay=0.02)
    caplog.set_level(logging.DEBUG)
    responses: list[str] = []
    with running_stack(
        db_url, sim=sim, twilio_account_sid=None, twilio_auth_token=None, api_keys=f"scan:{KEY}"
    ) as s:
        s.client.headers["Authorization"] = f"Bearer {KEY}"
        creds = {"AccountSid": ACCOUNT, "AuthToken": planted}
        sent = s.sms("+15551230001", **creds)
        bad = s.sms("12345", **creds)  # refused before Twilio: an escalation with a message
        assert s.client.post("/api/v1/processes", json=WAITER).status_code == 201
        waiter = s.create({"a": 1, "api_secret": planted}, ref="w1", process="waiter")
        s.wait(waiter["task_id"], state="waiting")
        r = s.client.patch(
            "/api/v1/processes/waiter/tasks/w1", json={"data": {"password": planted, "x": 1}}
        )
        responses.append(r.text)
        s.wait(waiter["task_id"], state="waiting")
        json_url = s.callback_url("waiter", "json")
        r = httpx.post(json_url, json={"ref": "w1", "AuthToken": planted, "answer": "yes"})
        responses.append(r.text)

        done = s.wait(sent["task_id"])
        assert done["outcome"] == "success"  # the simulator took the planted token
        assert s.wait(bad["task_id"])["outcome"] == "escalation"
        assert s.wait(waiter["task_id"])["outcome"] == "success"
        child = s.child(sent["task_id"])["task_id"]
        for task_id in (sent["task_id"], bad["task_id"], waiter["task_id"], child):
            responses.append(s.client.get(f"/api/v1/tasks/{task_id}").text)
            responses.append(s.client.get(f"/api/v1/tasks/{task_id}/history").text)
        for process in ("sending-sms", "getting-callback", "waiter"):
            responses.append(s.client.get(f"/api/v1/processes/{process}").text)
            responses.append(s.client.get(f"/api/v1/processes/{process}/tasks").text)
        responses.append(s.client.get("/metrics").text)
        # Corezoid's show returns task data too.
        body = json.dumps(
            {"ops": [{"type": "show", "obj": "task", "conv_id": "waiter", "ref": "w1"}]}
        )
        at = str(int(time.time()))
        sig = hashlib.sha1((at + KEY + body + KEY).encode()).hexdigest()
        r = httpx.post(f"{s.api}/api/2/json/scan/{at}/{sig}", content=body)
        assert r.json()["ops"][0]["proc"] == "ok"
        responses.append(r.text)

        history = s.history(waiter["task_id"])
        fields = [e["detail"]["fields"] for e in history if e["kind"] == "callback"]
        assert fields == [{"x": 1}, {"ref": "w1", "answer": "yes"}]  # secrets dropped, no seal
        stored = _db_text(db_url)
        rt = Runtime(s.settings)
        with rt.db.read() as conn:
            assert (
                twilio_of(rt).account_token(conn, ACCOUNT) == planted
            )  # kept, encrypted, for callbacks
        rt.db.dispose()

    for text in (*responses, caplog.text, stored):
        assert planted not in text and basic not in text
    assert SEALED in stored  # the inbox kept them sealed
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        for f in path.parent.glob(path.name + "*"):  # the file, its WAL and journal
            assert planted.encode() not in f.read_bytes()


OLD, NEW = "old-server-secret-" + "a" * 20, "new-server-secret-" + "b" * 20


def _runtime(url: str, secret: str | None, previous: tuple[str, ...] = ()) -> Runtime:
    return Runtime(Settings(database_url=url, secret=secret, previous_secrets=previous))


def _wait_hash(rt: Runtime) -> tuple[str, str]:
    view = asyncio.run(Service(rt).process_view("getting-callback"))
    url = next(n for n in view["nodes"] if "callback_urls" in n)["callback_urls"]["json"]
    conv_id, node_hash = url.rsplit("/", 2)[-2:]
    return conv_id, node_hash


def test_rotating_the_server_secret(sqlite_url: str) -> None:
    from orchestrator.services.deploy import ensure_shipped

    old = _runtime(sqlite_url, OLD)
    ensure_shipped(old)
    with old.db.write() as conn:
        kv.save_account_token(conn, ACCOUNT, old.vault.encrypt("tok-1"), time.time())
    login, key_secret = apikeys.create_key(old, "rot")
    service = Service(old)
    task, _ = asyncio.run(
        service.create_task(
            "sending-sms",
            None,
            {"Number_to": "+15551230001", "Number_from": FROM, "Body": "x", "AuthToken": "tok-2"},
        )
    )
    conv_id, old_hash = _wait_hash(old)
    pending = asyncio.run(
        service.callbacks.receive_callback(
            "json", conv_id, old_hash, {"ref": "later", "password": "p"}
        )
    )
    assert pending["status"] == "accepted"
    # An api_call answer's token, sealed in its effect's result.
    answer = seal(old.vault, {"response": {"body": {"access_token": "tok-3"}}})
    with old.db.write() as conn:
        effect_store.begin(conn, task["task_id"], 0, 0, "api_call", {}, time.time())
        effect_store.finish(conn, task["task_id"], 0, 0, answer, time.time())

    both = _runtime(sqlite_url, NEW, (OLD,))
    assert _node_for(both, conv_id, old_hash) is not None
    assert _token(both) == "tok-1"
    assert apikeys.login_for_secret(both, key_secret) == "rot"
    assert apikeys.secret_for_login(both, "rot") == key_secret

    report = rotate(both.db, both.vault)
    assert report.reencrypted == {
        "twilio_accounts": 1,
        "api_keys": 1,
        "tasks": 1,
        "callbacks": 1,
        "effects": 1,
    }
    assert not report.unreadable
    again = rotate(both.db, both.vault)
    assert again.reencrypted == {} and again.current == 5

    new_only = _runtime(sqlite_url, NEW)
    assert _token(new_only) == "tok-1"
    assert apikeys.secret_for_login(new_only, "rot") == key_secret
    assert (
        new_only.vault.decrypt(_task_secrets(new_only, task["task_id"])) == '{"AuthToken": "tok-2"}'
    )
    db = Database(sqlite_url)
    with db.read() as conn:
        payload = json.loads(conn.execute(select(callbacks.c.payload)).scalar_one())
    db.dispose()
    assert json.loads(new_only.vault.decrypt(payload[SEALED]) or "") == {"password": "p"}
    # Once the old secret is gone, URLs handed out under it stop working.
    assert _node_for(new_only, conv_id, old_hash) is None

    stranger = _runtime(sqlite_url, "some-other-secret-" + "c" * 20)
    assert len(rotate(stranger.db, stranger.vault).unreadable) == 5
    with db.read() as conn:
        stored = json.loads(conn.execute(select(effects.c.result)).scalar_one())
    db.dispose()
    assert unseal(new_only.vault, stored) == {"response": {"body": {"access_token": "tok-3"}}}


def test_generated_secret_becomes_previous_when_orch_secret_is_set(sqlite_url: str) -> None:
    generated = _runtime(sqlite_url, None)
    generated.prepare()  # generates and stores the secret (its own write transaction)
    with generated.db.write() as conn:
        kv.save_account_token(conn, ACCOUNT, generated.vault.encrypt("tok-g"), time.time())
    explicit = _runtime(sqlite_url, NEW)
    assert explicit.previous_secrets == (generated.secret,)
    assert _token(explicit) == "tok-g"


def _token(rt: Runtime) -> str | None:
    with rt.db.read() as conn:
        return twilio_of(rt).account_token(conn, ACCOUNT)


def _node_for(rt: Runtime, conv_id: str, node_hash: str) -> str | None:
    with rt.db.read() as conn:
        return rt.wait_node_for_hash(conn, int(conv_id), node_hash)


def _task_secrets(rt: Runtime, task_id: str) -> str:
    from orchestrator.store.tables import tasks

    with rt.db.read() as conn:
        value: str = conn.execute(select(tasks.c.secrets).where(tasks.c.id == task_id)).scalar_one()
    return value


def test_secrets_rotate_command(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.cli import main

    old = _runtime(sqlite_url, OLD)
    with old.db.write() as conn:
        kv.save_account_token(conn, ACCOUNT, old.vault.encrypt("tok-c"), time.time())
    monkeypatch.setenv("ORCH_SECRET", NEW)
    assert main(["--database-url", sqlite_url, "secrets", "rotate"]) == 1
    assert "ORCH_PREVIOUS_SECRETS" in capsys.readouterr().err
    monkeypatch.setenv("ORCH_PREVIOUS_SECRETS", f"unused,{OLD}")
    assert main(["--database-url", sqlite_url, "secrets", "rotate"]) == 0
    assert "1 in twilio_accounts" in capsys.readouterr().out
    monkeypatch.delenv("ORCH_PREVIOUS_SECRETS")
    assert _token(_runtime(sqlite_url, NEW)) == "tok-c"
