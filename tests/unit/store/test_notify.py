"""LISTEN/NOTIFY wakes engines in other processes as soon as work is committed."""

from __future__ import annotations

import threading

import pytest

from orchestrator.store.db import Database
from orchestrator.store.notify import Listener, notify


def test_notify_reaches_a_listener_on_commit_only(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite has no NOTIFY; engines poll")
    woke = threading.Event()
    listener = Listener(db_url, woke.set)
    listener.start()
    db = Database(db_url)
    try:
        assert not woke.wait(1.5)  # connected and listening, nothing yet
        with pytest.raises(RuntimeError), db.write() as conn:
            notify(conn)
            raise RuntimeError("rolled back")
        assert not woke.wait(1.0)  # a rolled-back notification is never delivered
        with db.write() as conn:
            notify(conn)
        assert woke.wait(5.0)
    finally:
        listener.stop()
        db.dispose()


def test_notify_is_a_no_op_on_sqlite(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    with db.write() as conn:
        notify(conn)  # must not fail
    db.dispose()
