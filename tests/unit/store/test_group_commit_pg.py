"""Group commit on PostgreSQL (store/group_commit.py with an executor): a batch runs in a
thread, its jobs share one COMMIT, each still succeeds or fails on its own, and a batch
that meets another transaction's row lock starts over job by job instead of waiting."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from orchestrator.store.db import Database
from orchestrator.store.group_commit import BATCH_LOCK_WAIT_MS, GroupCommit


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
    assert names(db) == ["before", "after"]
    assert group.batches == 1


def test_a_batch_meeting_a_row_lock_starts_over_job_by_job(
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
    # The batch stopped at the wait and was rolled back ("b" had not run yet); the jobs
    # ran again alone, and each one's rows exist once.
    assert runs == {"a": 2, "rename": 2, "b": 1}
    assert names(db) == ["renamed", "a", "b"]
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


def test_savepoints_released_late_still_undo_and_keep_the_right_writes(
    db: Database, group: GroupCommit
) -> None:
    """A savepoint that ended well is released with the next one's start: an outer block
    that fails after an inner one ended well undoes both, and later jobs go on."""

    def inner_ok_outer_fails() -> None:
        with db.write() as outer:
            outer.execute(text("INSERT INTO item (name) VALUES ('outer')"))
            with db.write() as inner:
                inner.execute(text("INSERT INTO item (name) VALUES ('inner')"))
            raise ValueError("outer block fails")

    def two_blocks() -> None:
        insert(db, "first-block")
        with db.write() as conn:
            with db.write() as nested:
                nested.execute(text("INSERT INTO item (name) VALUES ('nested')"))
            conn.execute(text("INSERT INTO item (name) VALUES ('second-block')"))

    async def main() -> list[object]:
        return await asyncio.gather(
            group.run(insert, db, "a"),
            group.run(inner_ok_outer_fails),
            group.run(two_blocks),
            group.run(insert, db, "b"),
            return_exceptions=True,
        )

    a, failed, _two, b = asyncio.run(main())
    assert (a, b) == ("a", "b") and isinstance(failed, ValueError)
    assert group.batches == 1
    assert names(db) == ["a", "first-block", "nested", "second-block", "b"]
