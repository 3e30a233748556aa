"""Group commit on PostgreSQL after a batch is rolled back: only the job that failed it
runs alone; the others commit together in a new batch, so a flood of failing jobs does
not turn every batch into one transaction per job."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from test_group_commit_pg import insert

from orchestrator.store import group_commit
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
    yield GroupCommit(db, max_jobs=64, executor=pool, max_batches=2)
    pool.shutdown()


class Transactions:
    """Every COMMIT and ROLLBACK of any engine (the main pool and the batches')."""

    def __init__(self) -> None:
        self.commits = 0
        self.rollbacks = 0

    def commit(self, _conn: Any) -> None:
        self.commits += 1

    def rollback(self, _conn: Any) -> None:
        self.rollbacks += 1


@pytest.fixture
def transactions() -> Iterator[Transactions]:
    counted = Transactions()
    event.listen(Engine, "commit", counted.commit)
    event.listen(Engine, "rollback", counted.rollback)
    yield counted
    event.remove(Engine, "commit", counted.commit)
    event.remove(Engine, "rollback", counted.rollback)


def names(db: Database) -> list[str]:
    with db.read() as conn:
        return sorted(r[0] for r in conn.execute(text("SELECT name FROM item")))


def failing(db: Database, name: str) -> str:
    """Writes, then its block fails: it poisons any batch it runs in."""
    with db.write() as conn:
        conn.execute(text("INSERT INTO item (name) VALUES (:n)"), {"n": name})
        raise ValueError(f"{name} fails")


def test_one_poisoned_job_runs_alone_and_the_others_commit_in_one_batch(
    db: Database, group: GroupCommit, transactions: Transactions
) -> None:
    runs: dict[str, int] = {}

    def counted(name: str) -> str:
        runs[name] = runs.get(name, 0) + 1
        return insert(db, name)

    def catches() -> str:
        """Its block fails and it carries on: alone, the block is a savepoint."""
        runs["catches"] = runs.get("catches", 0) + 1
        try:
            with db.write() as conn:
                conn.execute(text("INSERT INTO item (name) VALUES ('undone')"))
                raise ValueError("expected")
        except ValueError:
            pass
        return insert(db, "kept")

    def counted_failing(name: str) -> str:
        runs[name] = runs.get(name, 0) + 1
        return failing(db, name)

    async def main() -> list[object]:
        jobs = [group.run(counted, f"n{i}") for i in range(10)]
        jobs.insert(3, group.run(catches))
        jobs.insert(7, group.run(counted_failing, "doomed"))
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(main())
    commits = transactions.commits
    assert results[3] == "kept"
    assert isinstance(results[7], ValueError) and str(results[7]) == "doomed fails"
    assert [r for i, r in enumerate(results) if i not in (3, 7)] == [f"n{i}" for i in range(10)]
    assert names(db) == sorted([f"n{i}" for i in range(10)] + ["kept"])
    # Two attempts rolled back (at "catches", then at "doomed"); each of those two ran
    # again alone; the ten others committed together, in one transaction.
    assert group.poisoned == 2 and group.alone == 2
    assert group.batches == 1 and group.jobs == 10
    assert commits == 2  # the batch, and "catches" alone ("doomed" alone rolled back)
    # The jobs before "doomed" ran twice (rolled back once: the second attempt ran those
    # after "catches" first), the others once.
    twice = {f"n{i}": 2 for i in range(6)} | {"catches": 2, "doomed": 2}
    assert runs == twice | {f"n{i}": 1 for i in range(6, 10)}


def _flood(db: Database, group: GroupCommit) -> tuple[list[object], dict[str, int]]:
    """40 jobs, every other one failing: their results, and how often each ran."""
    runs: dict[str, int] = {}

    def counted(name: str) -> str:
        runs[name] = runs.get(name, 0) + 1
        return insert(db, name) if name.startswith("ok") else failing(db, name)

    async def main() -> list[object]:
        jobs = [group.run(counted, f"ok{i}" if i % 2 == 0 else f"bad{i}") for i in range(40)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(main())
    return results, runs


def test_a_flood_of_failing_jobs_still_commits_the_others_in_batches(
    db: Database, group: GroupCommit, transactions: Transactions
) -> None:
    """Every other job fails: the good ones still share one COMMIT, and each job runs
    about once in batches that were rolled back (not once per failure before it)."""
    results, runs = _flood(db, group)
    commits = transactions.commits
    good = [f"ok{i}" for i in range(0, 40, 2)]
    assert [r for r in results if isinstance(r, str)] == good
    assert [str(r) for r in results if isinstance(r, ValueError)] == [
        f"bad{i} fails" for i in range(1, 40, 2)
    ]
    assert names(db) == sorted(good)
    assert group.poisoned == 20 and group.alone == 20
    assert group.batches == 1 and group.jobs == 20
    assert commits == 1
    # Good jobs: rolled back once at most, then committed; bad ones: once in a batch,
    # once alone.
    assert all(runs[name] <= 2 for name in good)
    assert all(runs[f"bad{i}"] == 2 for i in range(1, 40, 2))


def test_the_work_rolled_back_is_bounded(
    db: Database, group: GroupCommit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once REBATCH_RUNS job runs per job of the batch were rolled back, the jobs left
    run one by one (here: a bound of one run per job, met by the flood)."""
    monkeypatch.setattr(group_commit, "REBATCH_RUNS", 1)
    results, runs = _flood(db, group)
    good = [f"ok{i}" for i in range(0, 40, 2)]
    assert [r for r in results if isinstance(r, str)] == good
    assert names(db) == sorted(good)
    # Each attempt ran a good job and a bad one: 20 attempts use up the 40 runs allowed.
    assert group.poisoned == 20 and group.batches == 0 and group.alone == 40
    assert sum(runs.values()) == 40 + 40


def test_a_contended_job_waits_alone_while_the_others_commit_in_one_batch(
    db: Database, group: GroupCommit, transactions: Transactions
) -> None:
    insert(db, "locked")
    held, release = threading.Event(), threading.Event()

    def hold_the_row() -> None:  # another process's transaction, say
        with db.engine.begin() as conn:
            conn.execute(text("SELECT * FROM item WHERE name = 'locked' FOR UPDATE"))
            held.set()
            release.wait(10)

    def rename() -> str:
        with db.write() as conn:
            conn.execute(text("UPDATE item SET name = 'renamed' WHERE name = 'locked'"))
        return "renamed"

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert held.wait(10)
    threading.Timer(BATCH_LOCK_WAIT_MS / 1000 * 3, release.set).start()
    before = transactions.commits

    async def main() -> list[str]:
        jobs = [group.run(insert, db, f"n{i}") for i in range(8)]
        jobs.insert(2, group.run(rename))
        return await asyncio.gather(*jobs)

    try:
        results = asyncio.run(main())
    finally:
        release.set()
        holder.join()
    commits = transactions.commits - before
    assert results[2] == "renamed"
    assert names(db) == sorted([f"n{i}" for i in range(8)] + ["renamed"])
    assert group.contended == 1 and group.alone == 1
    assert group.batches == 1 and group.jobs == 8
    # The holder's, the rename's alone, the batch's.
    assert commits == 3


def test_a_job_cancelled_after_its_batch_was_rolled_back_is_skipped(
    db: Database, group: GroupCommit
) -> None:
    """A caller cancelled while the failing job ran alone: its job is not run again."""
    started, cancel = threading.Event(), threading.Event()

    def slow_failure() -> None:
        if not db.in_batch():  # alone: wait until the other caller is gone
            started.set()
            assert cancel.wait(10)
        failing(db, "doomed")

    async def main() -> tuple[object, ...]:
        a = asyncio.ensure_future(group.run(insert, db, "a"))
        cancelled = asyncio.ensure_future(group.run(insert, db, "cancelled"))
        doomed = asyncio.ensure_future(group.run(slow_failure))
        b = asyncio.ensure_future(group.run(insert, db, "b"))
        await asyncio.sleep(0)
        while not started.is_set():
            await asyncio.sleep(0.01)
        cancelled.cancel()
        cancel.set()
        return tuple(await asyncio.gather(a, doomed, b, return_exceptions=True))

    a, doomed, b = asyncio.run(main())
    assert (a, b) == ("a", "b") and isinstance(doomed, ValueError)
    assert names(db) == ["a", "b"]
    assert group.batches == 1 and group.jobs == 2
