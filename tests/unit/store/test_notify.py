"""LISTEN/NOTIFY wakes engines in other processes as soon as work is committed."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Connection

from orchestrator.store import notify as notify_module
from orchestrator.store.db import Database
from orchestrator.store.group_commit import GroupCommit
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


def test_a_batch_sends_one_notification_at_commit_and_none_when_rolled_back(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    woke = threading.Event()
    listener = Listener(pg_url, woke.set)
    listener.start()
    db = Database(pg_url)
    sent: list[object] = []
    send = notify_module._send

    def counting(conn: Connection) -> None:
        sent.append(conn)
        send(conn)

    monkeypatch.setattr(notify_module, "_send", counting)

    def job() -> None:
        with db.write() as conn:
            notify(conn)

    async def jobs(group: GroupCommit) -> None:
        await asyncio.gather(*(group.run(job) for _ in range(5)))

    pool = ThreadPoolExecutor(1)
    try:
        assert not woke.wait(1.5)  # connected and listening, nothing yet
        with pytest.raises(RuntimeError), db.batch(optimistic=True) as conn:
            notify(conn)
            notify(conn)
            raise RuntimeError("rolled back")
        assert sent == [] and not woke.wait(1.0)

        group = GroupCommit(db, executor=pool)
        asyncio.run(jobs(group))
        assert group.batches == 1 and group.jobs == 5
        assert len(sent) == 1  # five jobs notified: one statement, before the COMMIT
        assert woke.wait(5.0)

        woke.clear()
        with db.write() as conn:  # outside a batch: at once, as before
            notify(conn)
            assert len(sent) == 2
        assert woke.wait(5.0)
    finally:
        pool.shutdown()
        listener.stop()
        db.dispose()
