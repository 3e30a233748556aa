"""Group commit (store/group_commit.py): jobs ready together share one SQLite COMMIT, yet
each one succeeds or fails on its own and its caller resumes only once it is durable."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from orchestrator.store.db import Database
from orchestrator.store.group_commit import BUSY_JOBS, GroupCommit, TransactionLost


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/g.db")
    with database.write() as conn:
        conn.execute(text("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
        conn.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        conn.execute(
            text(
                "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER "
                "REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    yield database
    database.dispose()


def names(path_db: Database) -> list[str]:
    """What another connection (another process, say) sees: committed rows only."""
    other = Database(str(path_db.engine.url))
    try:
        with other.read() as conn:
            return [r[0] for r in conn.execute(text("SELECT name FROM item ORDER BY id"))]
    finally:
        other.dispose()


def insert(db: Database, name: str) -> str:
    with db.write() as conn:
        conn.execute(text("INSERT INTO item (name) VALUES (:n)"), {"n": name})
    return name


def test_jobs_ready_together_share_one_commit_and_each_gets_its_result(db: Database) -> None:
    group = GroupCommit(db)

    async def main() -> list[str]:
        return await asyncio.gather(*(group.run(insert, db, f"n{i}") for i in range(20)))

    assert asyncio.run(main()) == [f"n{i}" for i in range(20)]
    assert group.jobs == 20
    assert group.batches == 1
    assert names(db) == [f"n{i}" for i in range(20)]


def test_caller_resumes_only_after_its_write_is_committed(db: Database) -> None:
    group = GroupCommit(db)
    seen: list[list[str]] = []

    async def one(name: str) -> None:
        await group.run(insert, db, name)
        seen.append(names(db))  # another connection already sees it

    async def main() -> None:
        await asyncio.gather(one("a"), one("b"))

    asyncio.run(main())
    assert all({"a", "b"} <= set(s) for s in seen)


def test_a_failing_job_leaves_nothing_and_the_others_commit(db: Database) -> None:
    group = GroupCommit(db)

    def half_then_fail() -> None:
        insert(db, "kept-by-nobody")
        with db.write() as conn:  # a second write in the same job, which fails
            conn.execute(text("INSERT INTO item (name) VALUES ('x')"))
            conn.execute(text("INSERT INTO item (name) VALUES ('x')"))

    async def main() -> list[object]:
        return await asyncio.gather(
            group.run(insert, db, "before"),
            group.run(half_then_fail),
            group.run(insert, db, "after"),
            return_exceptions=True,
        )

    before, failed, after = asyncio.run(main())
    assert (before, after) == ("before", "after")
    assert "UNIQUE" in str(failed)
    # The job's first write block had finished, as a transaction of its own would have;
    # its failed block left nothing.
    assert names(db) == ["before", "kept-by-nobody", "after"]
    assert group.batches == 1


def test_a_failed_commit_fails_every_job_of_the_batch(db: Database) -> None:
    group = GroupCommit(db)

    def orphan() -> None:  # valid until COMMIT checks the deferred foreign key
        with db.write() as conn:
            conn.execute(text("INSERT INTO child (parent_id) VALUES (99)"))

    async def main() -> list[object]:
        return await asyncio.gather(
            group.run(insert, db, "a"), group.run(orphan), return_exceptions=True
        )

    results = asyncio.run(main())
    assert all(isinstance(r, Exception) and "FOREIGN KEY" in str(r) for r in results)
    assert names(db) == []


def test_a_transaction_sqlite_dropped_fails_the_batch_and_nothing_autocommits(
    db: Database,
) -> None:
    group = GroupCommit(db)

    def drop_transaction() -> None:
        with db.write() as conn:
            conn.connection.dbapi_connection.execute("ROLLBACK")  # type: ignore[union-attr]

    async def main() -> list[object]:
        return await asyncio.gather(
            group.run(insert, db, "a"),
            group.run(drop_transaction),
            group.run(insert, db, "c"),
            return_exceptions=True,
        )

    results = asyncio.run(main())
    assert all(isinstance(r, TransactionLost) for r in results)
    assert names(db) == []
    assert asyncio.run(GroupCommit(db).run(insert, db, "d")) == "d"  # usable again
    assert names(db) == ["d"]


def test_a_cancelled_caller_job_is_skipped(db: Database) -> None:
    group = GroupCommit(db)

    async def main() -> None:
        doomed = asyncio.ensure_future(group.run(insert, db, "doomed"))
        kept = asyncio.ensure_future(group.run(insert, db, "kept"))
        await asyncio.sleep(0)  # both queued, batch not run yet
        doomed.cancel()
        await kept

    asyncio.run(main())
    assert names(db) == ["kept"]


def test_reads_and_nested_writes_inside_a_batch_see_earlier_jobs(db: Database) -> None:
    group = GroupCommit(db)

    def count() -> int:
        with db.read() as conn:
            return int(conn.execute(text("SELECT count(*) FROM item")).scalar_one())

    def nested() -> int:
        with db.write() as outer:
            outer.execute(text("INSERT INTO item (name) VALUES ('outer')"))
            with db.write() as inner:
                inner.execute(text("INSERT INTO item (name) VALUES ('inner')"))
        return count()

    async def main() -> list[int | str]:
        return await asyncio.gather(group.run(insert, db, "first"), group.run(nested))

    assert asyncio.run(main()) == ["first", 3]
    assert names(db) == ["first", "outer", "inner"]


def test_batches_are_capped_and_keep_their_order(db: Database) -> None:
    group = GroupCommit(db, max_jobs=3)

    async def main() -> None:
        await asyncio.gather(*(group.run(insert, db, f"n{i}") for i in range(10)))

    asyncio.run(main())
    assert group.batches == 4
    assert names(db) == [f"n{i}" for i in range(10)]


def test_outside_a_batch_writes_are_their_own_transactions(db: Database) -> None:
    insert(db, "plain")
    assert names(db) == ["plain"]


def test_under_load_batches_are_spaced_and_light_load_commits_at_once(db: Database) -> None:
    group = GroupCommit(db, spacing=0.3)
    started: dict[str, float] = {}

    def stamp(name: str) -> str:
        started[name] = asyncio.get_running_loop().time()
        return insert(db, name)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        submitted = loop.time()
        await group.run(stamp, "alone")  # a batch of one: light load
        await group.run(stamp, "next")  # so the next one does not wait either
        busy = [f"busy{i}" for i in range(BUSY_JOBS)]
        await asyncio.gather(*(group.run(stamp, n) for n in busy))  # a busy batch...
        await asyncio.gather(group.run(stamp, "later1"), group.run(stamp, "later2"))
        return submitted

    submitted = asyncio.run(main())
    assert started["next"] - submitted < 0.25
    # ...after which the next batch waited for the spacing and took both waiting jobs.
    assert started["later1"] - started["busy0"] >= 0.29
    assert group.batches == 4
    assert len(names(db)) == 4 + BUSY_JOBS


def test_all_or_nothing_in_a_batch_undoes_only_its_block(db: Database) -> None:
    """all_or_nothing (a raw savepoint on SQLite, store/savepoint.py) inside a batch's
    write: a block that raises leaves nothing behind, what its job wrote before and after
    it stays, and the other jobs of the batch commit."""
    from orchestrator.store.savepoint import all_or_nothing

    group = GroupCommit(db)

    def job() -> str:
        with db.write() as conn:
            conn.execute(text("INSERT INTO item (name) VALUES ('before')"))
            with pytest.raises(Exception, match="UNIQUE"):
                with all_or_nothing(conn):
                    conn.execute(text("INSERT INTO item (name) VALUES ('inside')"))
                    conn.execute(text("INSERT INTO item (name) VALUES ('before')"))
            with all_or_nothing(conn):
                conn.execute(text("INSERT INTO item (name) VALUES ('kept')"))
            conn.execute(text("INSERT INTO item (name) VALUES ('after')"))
        return "done"

    async def main() -> list[str]:
        return await asyncio.gather(
            group.run(insert, db, "first"), group.run(job), group.run(insert, db, "last")
        )

    assert asyncio.run(main()) == ["first", "done", "last"]
    assert group.batches == 1
    assert names(db) == ["first", "before", "kept", "after", "last"]
