"""Group commit on PostgreSQL (store/group_commit.py with an executor): a batch runs in a
thread, its jobs share one COMMIT, each still succeeds or fails on its own, and a batch
that meets another transaction's row lock starts over instead of waiting (that job alone,
the others in a new batch; more in test_group_commit_rebatch_pg.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
import sqlalchemy.exc
from sqlalchemy import text

from orchestrator.store.db import Database
from orchestrator.store.group_commit import BATCH_LOCK_WAIT_MS, GroupCommit
from orchestrator.store.savepoint import all_or_nothing


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    database = Database(pg_url)
    with database.write() as conn:
        conn.execute(text("CREATE TABLE item (id SERIAL PRIMARY KEY, name TEXT UNIQUE)"))
    yield database
    database.dispose()


@pytest.fixture
def group(db: Database) -> Iterator[GroupCommit]:
    pool = ThreadPoolExecutor(2)
    yield GroupCommit(db, executor=pool, max_batches=2)
    pool.shutdown()


def names(db: Database) -> list[str]:
    """What another connection sees: committed rows only."""
    other = Database(str(db.engine.url.render_as_string(hide_password=False)))
    try:
        with other.read() as conn:
            return [r[0] for r in conn.execute(text("SELECT name FROM item ORDER BY id"))]
    finally:
        other.dispose()


def insert(db: Database, name: str) -> str:
    with db.write() as conn:
        conn.execute(text("INSERT INTO item (name) VALUES (:n)"), {"n": name})
    return name


def test_jobs_share_one_commit_off_the_event_loop(db: Database, group: GroupCommit) -> None:
    loop_threads: set[int] = set()
    job_threads: set[int] = set()

    def job(name: str) -> str:
        job_threads.add(threading.get_ident())
        return insert(db, name)

    async def main() -> list[str]:
        loop_threads.add(threading.get_ident())
        return await asyncio.gather(*(group.run(job, f"n{i}") for i in range(20)))

    assert asyncio.run(main()) == [f"n{i}" for i in range(20)]
    assert group.batches == 1 and group.jobs == 20
    assert job_threads and not job_threads & loop_threads
    assert names(db) == [f"n{i}" for i in range(20)]


def test_a_failing_job_leaves_nothing_and_the_others_commit(
    db: Database, group: GroupCommit
) -> None:
    def duplicate() -> None:
        with db.write() as conn:
            conn.execute(text("INSERT INTO item (name) VALUES ('x')"))
            conn.execute(text("INSERT INTO item (name) VALUES ('x')"))

    async def main() -> list[object]:
        return await asyncio.gather(
            group.run(insert, db, "before"),
            group.run(duplicate),
            group.run(insert, db, "after"),
            return_exceptions=True,
        )

    before, failed, after = asyncio.run(main())
    assert (before, after) == ("before", "after")
    assert "duplicate key" in str(failed)
    assert sorted(names(db)) == ["after", "before"]
    # The batch took no savepoints: the failed block poisoned it; the duplicate ran again
    # alone (and failed), the two others in a new batch.
    assert group.poisoned == 1 and group.alone == 1
    assert group.batches == 1 and group.jobs == 2


def test_a_batch_meeting_a_row_lock_starts_over_without_waiting(
    db: Database, group: GroupCommit
) -> None:
    insert(db, "locked")
    held = threading.Event()
    release = threading.Event()
    runs: dict[str, int] = {}

    def hold_the_row() -> None:  # another process's transaction, say
        with db.engine.begin() as conn:
            conn.execute(text("SELECT * FROM item WHERE name = 'locked' FOR UPDATE"))
            held.set()
            release.wait(10)

    def counted_insert(name: str) -> str:
        runs[name] = runs.get(name, 0) + 1
        return insert(db, name)

    def rename() -> str:
        runs["rename"] = runs.get("rename", 0) + 1
        with db.write() as conn:
            conn.execute(text("UPDATE item SET name = 'renamed' WHERE name = 'locked'"))
        return "renamed"

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert held.wait(10)
    # The lock is released while the jobs run again one by one (they then wait for it).
    threading.Timer(BATCH_LOCK_WAIT_MS / 1000 * 3, release.set).start()
    started = time.monotonic()

    async def main() -> list[str]:
        return await asyncio.gather(
            group.run(counted_insert, "a"), group.run(rename), group.run(counted_insert, "b")
        )

    try:
        assert asyncio.run(main()) == ["a", "renamed", "b"]
    finally:
        release.set()
        holder.join()
    assert group.contended == 1
    # The batch stopped at the wait and was rolled back ("b" had not run yet); the
    # rename ran again alone (waiting for the lock), "a" and "b" in a new batch, and each
    # one's rows exist once.
    assert runs == {"a": 2, "rename": 2, "b": 1}
    assert group.alone == 1 and group.batches == 1 and group.jobs == 2
    assert sorted(names(db)) == ["a", "b", "renamed"]
    assert time.monotonic() - started >= BATCH_LOCK_WAIT_MS / 1000


def test_retry_inside_a_batch_leaves_the_lock_wait_to_the_batch(
    db: Database, group: GroupCommit
) -> None:
    """Database.retry does not retry a lock timeout inside a batch (the batch still
    holds its other jobs' locks): the batch starts over instead, where it is retried."""
    insert(db, "locked")
    held, release = threading.Event(), threading.Event()
    attempts: list[bool] = []

    def hold_the_row() -> None:
        with db.engine.begin() as conn:
            conn.execute(text("SELECT * FROM item WHERE name = 'locked' FOR UPDATE"))
            held.set()
            release.wait(10)

    def update() -> None:
        attempts.append(True)
        with db.write() as conn:
            conn.execute(text("UPDATE item SET name = 'done' WHERE name = 'locked'"))

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert held.wait(10)
    threading.Timer(BATCH_LOCK_WAIT_MS / 1000 * 3, release.set).start()

    async def main() -> None:
        await asyncio.gather(group.run(insert, db, "other"), group.run(db.retry, update))

    try:
        asyncio.run(main())
    finally:
        release.set()
        holder.join()
    assert len(attempts) == 2  # once in the batch, once alone (waiting for the lock)
    assert sorted(names(db)) == ["done", "other"]


def test_a_job_alone_is_a_plain_transaction(db: Database, group: GroupCommit) -> None:
    """A batch of one job runs it as its own transaction: no savepoint, and a lock wait
    is not cut short (nothing else of a batch is held meanwhile)."""
    insert(db, "locked")
    held, release = threading.Event(), threading.Event()
    savepoints: list[bool] = []

    def hold_the_row() -> None:
        with db.engine.begin() as conn:
            conn.execute(text("SELECT * FROM item WHERE name = 'locked' FOR UPDATE"))
            held.set()
            release.wait(10)

    def update() -> None:
        with db.write() as conn:
            savepoints.append(db.in_batch())
            conn.execute(text("UPDATE item SET name = 'done' WHERE name = 'locked'"))

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert held.wait(10)
    threading.Timer(BATCH_LOCK_WAIT_MS / 1000 * 3, release.set).start()
    try:
        asyncio.run(group.run(update))
    finally:
        release.set()
        holder.join()
    assert savepoints == [False] and group.contended == 0
    assert names(db) == ["done"]


def test_a_failing_block_after_one_that_ended_well_keeps_the_first(
    db: Database, group: GroupCommit
) -> None:
    """Blocks are transactions of their own, in a batch as alone: a job whose second
    block fails keeps its first block's writes (the batch, poisoned, ran job by job)."""

    def second_block_fails() -> None:
        insert(db, "first-block")
        with db.write() as conn:
            conn.execute(text("INSERT INTO item (name) VALUES ('second-block')"))
            raise ValueError("second block fails")

    async def main() -> list[object]:
        return await asyncio.gather(
            group.run(insert, db, "a"),
            group.run(second_block_fails),
            group.run(insert, db, "b"),
            return_exceptions=True,
        )

    a, failed, b = asyncio.run(main())
    assert (a, b) == ("a", "b") and isinstance(failed, ValueError)
    assert group.poisoned == 1
    assert sorted(names(db)) == ["a", "b", "first-block"]


class Statements:
    """Every statement sent through psycopg's cursors (SQLAlchemy's, store/sql's, the
    driver calls of savepoints); psycopg's own BEGIN and COMMIT are not among them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany

        def counted(cursor: psycopg.Cursor[Any], query: Any, *args: Any, **kw: Any) -> Any:
            self.sent.append(str(query))
            return execute(cursor, query, *args, **kw)

        def counted_many(cursor: psycopg.Cursor[Any], query: Any, *args: Any, **kw: Any) -> Any:
            self.sent.append(str(query))
            return executemany(cursor, query, *args, **kw)

        monkeypatch.setattr(psycopg.Cursor, "execute", counted)
        monkeypatch.setattr(psycopg.Cursor, "executemany", counted_many)

    def verbs(self) -> list[str]:
        return [s.split(None, 1)[0].upper() for s in self.sent]


def test_a_clean_batch_sends_its_jobs_statements_only(
    db: Database, group: GroupCommit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No SAVEPOINT or RELEASE per write, no SET of the lock timeout: the batch's
    connections have it from the start."""
    # The pools' first connections: SQLAlchemy's setup queries are not counted.
    insert(db, "warm")
    with db.batch(lock_timeout_ms=BATCH_LOCK_WAIT_MS):
        pass
    statements = Statements(monkeypatch)

    async def main() -> list[str]:
        return await asyncio.gather(*(group.run(insert, db, f"n{i}") for i in range(5)))

    assert asyncio.run(main()) == [f"n{i}" for i in range(5)]
    assert group.batches == 1 and group.poisoned == 0
    assert statements.verbs() == ["INSERT"] * 5
    with db.batch(lock_timeout_ms=BATCH_LOCK_WAIT_MS) as conn:
        timeout = conn.execute(text("SHOW lock_timeout")).scalar()
    assert timeout == f"{BATCH_LOCK_WAIT_MS}ms"
    with db.write() as conn:  # the main pool's connections wait as long as it takes
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "0"


def test_a_job_that_raises_leaves_nothing_and_the_others_commit(
    db: Database, group: GroupCommit
) -> None:
    runs: dict[str, int] = {}

    def counted_insert(name: str) -> str:
        runs[name] = runs.get(name, 0) + 1
        return insert(db, name)

    def writes_then_raises() -> None:
        runs["fails"] = runs.get("fails", 0) + 1
        with db.write() as conn:
            conn.execute(text("INSERT INTO item (name) VALUES ('doomed')"))
            raise ValueError("the job's own error")

    async def main() -> list[object]:
        return await asyncio.gather(
            group.run(counted_insert, "a"),
            group.run(writes_then_raises),
            group.run(counted_insert, "b"),
            return_exceptions=True,
        )

    a, failed, b = asyncio.run(main())
    assert (a, b) == ("a", "b") and isinstance(failed, ValueError)
    assert sorted(names(db)) == ["a", "b"]
    # "b" had not run when the batch was poisoned: it ran once, in the new batch.
    assert runs == {"a": 2, "fails": 2, "b": 1}
    assert group.poisoned == 1


def test_a_job_that_catches_an_error_of_its_block_runs_again_alone(
    db: Database, group: GroupCommit
) -> None:
    """Without a savepoint the caught block's writes would stay in the batch (or its
    failed statement would abort it): the batch is rolled back and run job by job, where
    the block is a savepoint again and only its own writes are undone."""

    def catches() -> str:
        try:
            with db.write() as conn:
                conn.execute(text("INSERT INTO item (name) VALUES ('undone')"))
                raise ValueError("expected")
        except ValueError:
            pass
        return insert(db, "kept")

    async def main() -> list[str]:
        return await asyncio.gather(
            group.run(insert, db, "a"), group.run(catches), group.run(insert, db, "b")
        )

    assert asyncio.run(main()) == ["a", "kept", "b"]
    assert sorted(names(db)) == ["a", "b", "kept"]
    assert group.poisoned == 1


def test_an_aborted_transaction_poisons_the_batch(db: Database, group: GroupCommit) -> None:
    """A failed statement outside any write block (a job that catches it) leaves the
    transaction aborted: the batch runs again job by job rather than fail as a whole."""

    def reads_badly() -> str:
        with db.read() as conn:
            try:
                conn.execute(text("SELECT * FROM no_such_table"))
            except Exception:
                pass
        return "read"

    async def main() -> list[str]:
        return await asyncio.gather(
            group.run(insert, db, "a"), group.run(reads_badly), group.run(insert, db, "b")
        )

    assert asyncio.run(main()) == ["a", "read", "b"]
    assert sorted(names(db)) == ["a", "b"]
    assert group.poisoned == 1


def test_all_or_nothing_in_a_batch_works_once_run_alone(db: Database, group: GroupCommit) -> None:
    """An expected error (a duplicate, as for RefTaken) caught around all_or_nothing:
    in the batch it poisons it; alone, the savepoint keeps the job's other writes."""
    insert(db, "taken")

    def try_duplicate() -> str:
        with db.write() as conn:
            conn.execute(text("INSERT INTO item (name) VALUES ('mine')"))
            try:
                with all_or_nothing(conn):
                    conn.execute(text("INSERT INTO item (name) VALUES ('taken')"))
            except sqlalchemy.exc.IntegrityError:
                pass
        return "handled"

    async def main() -> list[str]:
        return await asyncio.gather(
            group.run(insert, db, "a"), group.run(try_duplicate), group.run(insert, db, "b")
        )

    assert asyncio.run(main()) == ["a", "handled", "b"]
    assert sorted(names(db)) == ["a", "b", "mine", "taken"]
    assert group.poisoned == 1
