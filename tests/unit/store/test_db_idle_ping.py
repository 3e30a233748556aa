"""PostgreSQL connections are pinged only after sitting idle in the pool (a ping on
every checkout was a network round trip and a transaction each time)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from orchestrator.store import db as db_module
from orchestrator.store.db import Database


def _pings(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = database.engine.dialect.do_ping

    def counting(dbapi_conn: Any) -> bool:
        calls.append(1)
        return real(dbapi_conn)

    monkeypatch.setattr(database.engine.dialect, "do_ping", counting)
    return calls


def test_a_connection_in_steady_use_is_not_pinged(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the ping is PostgreSQL's")
    database = Database(db_url, pool_size=1)
    try:
        pings = _pings(database, monkeypatch)
        for _ in range(5):
            with database.read() as conn:
                assert conn.execute(text("SELECT 1")).scalar_one() == 1
        assert pings == []
    finally:
        database.dispose()


def test_an_idle_connection_that_died_is_replaced_before_use(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the ping is PostgreSQL's")
    monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)
    database = Database(db_url, pool_size=1)
    try:
        pings = _pings(database, monkeypatch)
        with database.read() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with Database(db_url, pool_size=1).engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            admin.commit()
        with database.read() as conn:  # no error: the ping found it dead
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
        assert pings
    finally:
        database.dispose()
