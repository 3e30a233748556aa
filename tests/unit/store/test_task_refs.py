"""A ref taken by another unfinished task, as the store reports it (``RefTaken``) to the
services, on both databases: nothing is written and the transaction goes on."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from orchestrator.store import sessions as console_sessions
from orchestrator.store import tasks as task_store
from orchestrator.store.db import Database
from orchestrator.store.records import TaskRecord


@pytest.fixture
def db(db_url: str) -> Database:
    database = Database(db_url)
    with database.write() as conn:
        if conn.execute(text("SELECT min(id) FROM processes")).scalar() is None:
            conn.execute(
                text(
                    "INSERT INTO processes (slug, title, current_version, created_at, updated_at) "
                    "VALUES ('p', 'P', 1, 0, 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO process_versions (process_id, version, definition, checksum, "
                    "created_at) SELECT id, 1, '{}', 'x', 0 FROM processes WHERE slug = 'p'"
                )
            )
    return database


def _task(db: Database, task_id: str, ref: str, state: str = "active") -> TaskRecord:
    with db.read() as conn:
        row = conn.execute(
            text("SELECT process_id, id FROM process_versions ORDER BY id LIMIT 1")
        ).one()
    now = time.time()
    return TaskRecord(
        id=task_id,
        process_id=int(row[0]),
        version_id=int(row[1]),
        node_id="start",
        state=state,
        data={},
        created_at=now,
        updated_at=now,
        ref=ref,
    )


def test_a_taken_ref_is_reported_and_the_transaction_goes_on(db: Database) -> None:
    try:
        with db.write() as conn:
            task_store.insert_new_task(conn, _task(db, "a" * 24, "r"))
        finished = _task(db, "b" * 24, "r2", state="done")
        with db.write() as conn:
            with pytest.raises(task_store.RefTaken):
                task_store.insert_new_task(conn, _task(db, "c" * 24, "r"))
            task_store.insert_new_task(conn, finished)  # written in the same transaction
        with db.write() as conn:
            assert task_store.get_task(conn, "c" * 24) is None
            assert task_store.get_task(conn, "b" * 24) is not None
            task_store.insert_new_task(conn, _task(db, "d" * 24, "r2"))
        with db.write() as conn:
            # The finished task made unfinished again while its ref is taken.
            again = task_store.get_task(conn, "b" * 24)
            assert again is not None
            again.state, again.outcome = "active", None
            with pytest.raises(task_store.RefTaken):
                task_store.save_task_unique(conn, again, again.rev)
            assert again.rev == 0
            unchanged = task_store.get_task(conn, "b" * 24)
            assert unchanged is not None and unchanged.state == "done"
    finally:
        db.dispose()


def test_console_sessions_are_found_until_ended(db: Database) -> None:
    try:
        now = time.time()
        with db.write() as conn:
            console_sessions.open_session(conn, "h1", "ops", now, 60)
            console_sessions.open_session(conn, "old", "ops", now - 120, 60)
        with db.write() as conn:
            console_sessions.open_session(conn, "h2", "ops", now, 60)  # sweeps "old"
            assert console_sessions.get_session(conn, "h1") == ("ops", pytest.approx(now + 60))
            assert console_sessions.get_session(conn, "old") is None
            console_sessions.end_session(conn, "h1")
            assert console_sessions.get_session(conn, "h1") is None
    finally:
        db.dispose()
