"""Plain SQL on the driver (store/sql) and the task statements built on it, on both
databases: parameters, rowcounts, RETURNING, executemany, changed-column saves, claims."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from orchestrator.store import callbacks as inbox
from orchestrator.store import effects
from orchestrator.store import tasks as task_store
from orchestrator.store.db import Database
from orchestrator.store.records import Event, TaskRecord


@pytest.fixture
def db(db_url: str) -> Database:
    database = Database(db_url)
    with database.read() as conn:
        process_id = conn.execute(text("SELECT min(id) FROM processes")).scalar()
    if process_id is None:  # a bare migrated database: give tasks a process and version
        with database.write() as conn:
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


def _ids(db: Database) -> tuple[int, int]:
    with db.read() as conn:
        row = conn.execute(
            text("SELECT process_id, id FROM process_versions ORDER BY id LIMIT 1")
        ).one()
    return int(row[0]), int(row[1])


def _task(db: Database, task_id: str, **kw: object) -> TaskRecord:
    process_id, version_id = _ids(db)
    now = time.time()
    values: dict = dict(
        id=task_id,
        process_id=process_id,
        version_id=version_id,
        node_id="start",
        state="active",
        data={"n": 1},
        created_at=now,
        updated_at=now,
    )
    values.update(kw)
    return TaskRecord(**values)


def test_task_round_trip_and_changed_column_save(db: Database) -> None:
    try:
        task = _task(db, "t" * 24, ref="r1", data={"x": "é", "n": 1.5})
        with db.write() as conn:
            task_store.insert_task(conn, task)
        with db.write() as conn:
            loaded = task_store.get_task(conn, task.id)
            assert loaded == task  # every column comes back as written
            assert task_store.find_by_ref(conn, task.process_id, "r1") == task
            assert loaded is not None
            assert loaded.changed_columns() == {}
            loaded.node_id, loaded.data["x"] = "next", "ü"
            assert set(loaded.changed_columns()) == {"node_id", "data"}
            assert task_store.save_task(conn, loaded, loaded.rev)
            assert loaded.rev == 1
            stale = task_store.get_task(conn, task.id)
        with db.write() as conn:
            assert stale is not None
            stale.rev = 0  # somebody else's older copy: refused, and its rev left alone
            stale.node_id = "elsewhere"
            assert not task_store.save_task(conn, stale, 0)
            assert stale.rev == 0
            again = task_store.get_task(conn, task.id)
            assert again is not None
            assert (again.node_id, again.data, again.rev) == ("next", {"x": "ü", "n": 1.5}, 1)
    finally:
        db.dispose()


def test_events_one_and_many(db: Database) -> None:
    try:
        task = _task(db, "e" * 24)
        with db.write() as conn:
            task_store.insert_task(conn, task)
            task_store.add_events(conn, task.id, [Event("created", None, "start")], 1.0)
            task_store.add_events(
                conn,
                task.id,
                [Event("transition", "start", "a"), Event("x", "a", None, {"k": [1, 2]})],
                2.0,
            )
            events = task_store.history(conn, task.id)
        assert [(e["kind"], e["at"], e["detail"]) for e in events] == [
            ("created", 1.0, None),
            ("transition", 2.0, None),
            ("x", 2.0, {"k": [1, 2]}),
        ]
    finally:
        db.dispose()


def test_claims_lease_each_task_once(db: Database) -> None:
    try:
        now = time.time()
        with db.write() as conn:
            for i in range(5):
                task_store.insert_task(conn, _task(db, f"{i:024d}", updated_at=now + i))
            task_store.insert_task(
                conn,
                _task(db, "w" * 24, state="waiting", wake_at=now - 1, node_id="wait"),
            )
        with db.write() as conn:
            first = task_store.claim_runnable(conn, "me", 3, now, 30)
            rest = task_store.claim_runnable(conn, "me", 10, now, 30)
            timers = task_store.claim_due_timers(conn, "me", 10, now, 30)
        assert [t.id for t in first] == [f"{i:024d}" for i in range(3)]
        assert sorted(t.id for t in rest) == [f"{i:024d}" for i in range(3, 5)]
        assert all(t.lease_owner == "me" and t.rev == 1 for t in first + rest)
        assert [(t.id, t.state, t.entry, t.wake_at) for t in timers] == [
            ("w" * 24, "active", "timeout", None)
        ]
        with db.write() as conn:  # all leased now: nothing left to claim
            assert task_store.claim_runnable(conn, "other", 10, now, 30) == []
    finally:
        db.dispose()


def test_callback_insert_dedupes_and_status_moves_once(db: Database) -> None:
    try:
        with db.write() as conn:
            kw = dict(process_id=1, node_id="n", form="json", payload={"a": 1}, received_at=1.0)
            first = inbox.insert_callback(conn, dedupe_key="k1", ref="r", **kw)  # type: ignore[arg-type]
            dup = inbox.insert_callback(conn, dedupe_key="k1", ref="r", **kw)  # type: ignore[arg-type]
            other = inbox.insert_callback(conn, task_id="t" * 24, **kw)  # type: ignore[arg-type]
            assert first is not None and other is not None and dup is None
            assert [c.id for c in inbox.new_callbacks(conn, 10)] == [first, other]
            found = inbox.unsettled_for_task(conn, "t" * 24, 1, "r")
            assert [c.id for c in found] == [first, other]  # by ref and by task id, once each
            assert [c.id for c in inbox.unsettled_for_task(conn, "z" * 24, 1, "r")] == [first]
            assert inbox.set_status(conn, first, "applied", now=2.0, task_id="t" * 24)
            assert not inbox.set_status(conn, first, "applied", now=3.0)
            assert inbox.get_new(conn, first) is None
            got = inbox.get_new(conn, other)
            assert got is not None and got.payload == {"a": 1}
    finally:
        db.dispose()


def test_effect_begin_once_then_returns_the_record(db: Database) -> None:
    try:
        with db.write() as conn:
            assert effects.begin(conn, "t" * 24, 1, 0, "sms", {"To": "+1"}, 5.0) is None
            again = effects.begin(conn, "t" * 24, 1, 0, "sms", {"To": "+2"}, 6.0)
            assert again == {
                "status": "started",
                "result": None,
                "created_at": 5.0,
                "request": {"To": "+1"},
            }
            effects.finish(conn, "t" * 24, 1, 0, {"sid": "SM1"}, 7.0)
            done = effects.begin(conn, "t" * 24, 1, 0, "sms", {}, 8.0)
            assert done is not None and (done["status"], done["result"]) == ("done", {"sid": "SM1"})
    finally:
        db.dispose()


def test_statements_share_one_cursor_and_each_keeps_its_column_names(db: Database) -> None:
    """PostgreSQL: one cursor per connection, reused by every statement (a new one per
    statement cost psycopg's adapter copy); each statement's rows keep their own names,
    also after a statement that failed on that cursor."""
    from orchestrator.store import sql

    a = sql.Query("a", "SELECT :x AS one, :y AS two")
    b = sql.Query("b", "SELECT :y AS three")
    bad = sql.Query("bad", "SELECT nope FROM no_such_table WHERE x = :zero")
    try:
        with db.write() as conn:
            first = sql.execute(conn, a, {"y": 2, "x": 1})
            assert sql.first(first) == {"one": 1, "two": 2}
            second = sql.execute(conn, b, {"y": 3, "x": 9})
            assert sql.mappings(second) == [{"three": 3}]
            assert sql.first(sql.execute(conn, a, {"x": 4, "y": 5})) == {"one": 4, "two": 5}
            if db.is_postgres:
                assert second is first  # the same cursor, run again
        with pytest.raises(Exception, match="no_such_table"):
            with db.write() as conn:
                sql.execute(conn, bad, {"zero": 0})
        with db.write() as conn:  # the connection and its cursor are fine afterwards
            assert sql.first(sql.execute(conn, b, {"y": 6})) == {"three": 6}
            assert sql.scalar(sql.execute(conn, a, {"x": 7, "y": 8})) == 7
    finally:
        db.dispose()
