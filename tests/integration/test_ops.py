"""Health and readiness: /readyz follows the database."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from orchestrator.config import Settings
from orchestrator.http.app import create_app
from orchestrator.servers import free_port
from orchestrator.store.db import Database


def test_ping_fails_for_an_unreachable_database() -> None:
    db = Database(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    assert db.ping() is False
    db.dispose()


def test_readyz_reports_the_database(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(Settings(database_url=sqlite_url), run_engine=False)
    with TestClient(app) as client:
        assert client.get("/readyz").json() == {"status": "ready"}
        assert client.get("/healthz").status_code == 200
        monkeypatch.setattr(Database, "ping", lambda self: False)
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json() == {"status": "database unreachable"}
        assert client.get("/healthz").status_code == 200  # alive, just not ready
