"""Work queued with store/aftercommit.py runs once its transaction has committed, and
never when it is rolled back: a transaction run again (a retry, a group-commit batch
started over) counts once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Connection, text
from test_group_commit_pg import names

from orchestrator.store.aftercommit import after_commit
from orchestrator.store.db import Database
from orchestrator.store.group_commit import GroupCommit
from orchestrator.store.savepoint import all_or_nothing


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    key = "INTEGER PRIMARY KEY" if database.is_sqlite else "SERIAL PRIMARY KEY"
    try:
        with database.write() as conn:
            conn.execute(text(f"CREATE TABLE item (id {key}, name TEXT UNIQUE)"))
        yield database
    finally:
        database.dispose()


class Ran:
    """What the queued callables saw: their names, and the rows committed by then."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.names: list[str] = []
        self.committed: list[list[str]] = []

    def queue(self, conn: Connection, name: str) -> None:
        after_commit(conn, lambda: self.ran(name))

    def ran(self, name: str) -> None:
        self.names.append(name)
        self.committed.append(names(self.db))


def insert(conn: Connection, name: str) -> None:
    conn.execute(text("INSERT INTO item (name) VALUES (:n)"), {"n": name})


def test_a_rolled_back_write_runs_nothing_it_queued(db: Database) -> None:
    ran = Ran(db)
    with pytest.raises(ValueError), db.write() as conn:
        insert(conn, "a")
        ran.queue(conn, "a")
        raise ValueError("rolled back")
    with db.write() as conn:  # the next transaction does not inherit the queue
        insert(conn, "b")
    assert ran.names == [] and names(db) == ["b"]


def test_a_committed_write_runs_its_callables_once_after_the_commit(db: Database) -> None:
    ran = Ran(db)
    with db.write() as conn:
        insert(conn, "a")
        ran.queue(conn, "a")
        ran.queue(conn, "b")
        assert ran.names == []
    assert ran.names == ["a", "b"]
    assert ran.committed == [["a"], ["a"]]  # another connection saw the row: committed
    with db.write() as conn:
        insert(conn, "c")
    assert ran.names == ["a", "b"]


def test_a_rolled_back_savepoint_drops_what_it_queued(db: Database) -> None:
    ran = Ran(db)
    with db.write() as conn:
        ran.queue(conn, "before")
        with pytest.raises(ValueError), all_or_nothing(conn):
            ran.queue(conn, "undone")
            raise ValueError("rolled back to the savepoint")
        with all_or_nothing(conn):
            ran.queue(conn, "kept")
    assert ran.names == ["before", "kept"]


def test_a_callable_that_raises_leaves_the_commit_and_the_others(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    ran = Ran(db)

    def broken() -> None:
        raise RuntimeError("broken")

    with db.write() as conn:
        insert(conn, "a")
        after_commit(conn, broken)
        ran.queue(conn, "a")
    assert ran.names == ["a"] and names(db) == ["a"]
    assert "a callable run after a commit failed" in caplog.text


def test_a_batch_job_whose_write_fails_queues_nothing(db: Database) -> None:
    """A batch with savepoints (SQLite's; PostgreSQL's without an executor): a job's
    write() rolled back drops what it queued; the rest runs once the batch commits."""
    ran = Ran(db)

    def good(name: str) -> None:
        with db.write() as conn:
            insert(conn, name)
            ran.queue(conn, name)

    def catches() -> None:
        with pytest.raises(ValueError), db.write() as conn:
            insert(conn, "undone")
            ran.queue(conn, "undone")
            raise ValueError("its savepoint is rolled back")
        good("kept")

    async def main() -> None:
        group = GroupCommit(db)
        await asyncio.gather(group.run(good, "a"), group.run(catches), group.run(good, "b"))
        assert group.batches == 1

    asyncio.run(main())
    assert ran.names == ["a", "kept", "b"]
    assert ran.committed == [["a", "kept", "b"]] * 3  # after the batch's COMMIT


def test_a_failed_batch_runs_nothing(db: Database) -> None:
    ran = Ran(db)
    with pytest.raises(ValueError), db.batch() as conn:
        with db.write():
            insert(conn, "a")
            ran.queue(conn, "a")
        raise ValueError("the batch is rolled back")
    assert ran.names == [] and names(db) == []


def test_a_connection_outside_any_write_runs_it_at_once(db: Database) -> None:
    done: list[int] = []
    with db.read() as conn:
        after_commit(conn, lambda: done.append(1))
        assert done == [1]


def test_a_poisoned_batch_run_again_runs_each_callable_once(db: Database) -> None:
    """PostgreSQL's optimistic batch: rolled back when a job fails, its jobs run again."""
    if not db.is_postgres:
        pytest.skip("optimistic batches are PostgreSQL's")
    ran = Ran(db)
    runs: dict[str, int] = {}

    def job(name: str) -> str:
        runs[name] = runs.get(name, 0) + 1
        with db.write() as conn:
            insert(conn, name)
            ran.queue(conn, name)
            if name == "bad":
                raise ValueError("poisons its batch")
        return name

    async def main() -> list[object]:
        pool = ThreadPoolExecutor(2)
        group = GroupCommit(db, executor=pool, max_batches=2)
        try:
            names = ["a", "b", "bad", "c"]
            return await asyncio.gather(*(group.run(job, n) for n in names), return_exceptions=True)
        finally:
            pool.shutdown()

    results = asyncio.run(main())
    assert results[:2] == ["a", "b"] and results[3] == "c"
    assert runs == {"a": 2, "b": 2, "bad": 2, "c": 1}  # a and b: rolled back once
    assert sorted(ran.names) == ["a", "b", "c"]
    assert sorted(names(db)) == ["a", "b", "c"]


def test_a_write_inside_another_keeps_the_queues_apart(db: Database) -> None:
    """PostgreSQL: a write() inside another is a transaction of its own."""
    if not db.is_postgres:
        pytest.skip("SQLite has one writer")
    ran = Ran(db)
    with db.write() as outer:
        with db.write() as inner:
            insert(inner, "inner")
            ran.queue(inner, "inner")
            ran.queue(outer, "outer")
        assert ran.names == ["inner"]
        insert(outer, "outer")
    assert ran.names == ["inner", "outer"]
    assert ran.committed == [["inner"], ["inner", "outer"]]
