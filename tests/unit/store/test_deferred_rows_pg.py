"""Rows deferred in an optimistic PostgreSQL batch (store/savepoint.py ``Optimistic.defer``:
history, tracked messages): every job's are written in one statement
just before the COMMIT, never if the batch is rolled back; any statement of the batch on
their table (a read, a purge, an update) sees them, in order; rows that cannot be
written send every job to run alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import Connection

from orchestrator.config import Settings
from orchestrator.engine.runtime import Runtime
from orchestrator.services.deploy import ensure_shipped
from orchestrator.services.tasks import Service
from orchestrator.store import tasks as task_store
from orchestrator.store.db import Database
from orchestrator.store.group_commit import GroupCommit
from orchestrator.store.records import Event
from orchestrator.store.retention import purge_batch
from orchestrator.store.savepoint import Optimistic
from orchestrator.twilio import messages_store as message_store


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    database = Database(pg_url)
    yield database
    database.dispose()


@pytest.fixture
def group(db: Database) -> Iterator[GroupCommit]:
    pool = ThreadPoolExecutor(2)
    yield GroupCommit(db, executor=pool, max_batches=2)
    pool.shutdown()


def _counted(monkeypatch: pytest.MonkeyPatch, module: Any, writer: str) -> list[int]:
    """The number of rows of each statement ``module.writer`` runs from now on."""
    seen: list[int] = []
    real = getattr(module, writer)

    def counted(conn: Connection, rows: list[dict[str, Any]]) -> None:
        seen.append(len(rows))
        real(conn, rows)

    monkeypatch.setattr(module, writer, counted)
    return seen


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of rows of each statement that wrote events."""
    return _counted(monkeypatch, task_store, "_insert_event_rows")


def _events(n: int) -> list[Event]:
    # A detail, NULLs in every nullable column, times of both numeric types: each kind
    # of value goes through.
    return [
        Event("transition", node_id="a", to_node_id=f"n{i}", detail={"i": i}, at=i + 1.5)
        if i % 2 == 0
        else Event("note", at=i + 1)
        for i in range(n)
    ]


def _stored(db: Database, task_id: str) -> list[tuple[Any, ...]]:
    with db.read() as conn:
        rows = task_store.history(conn, task_id)
    return [(r["kind"], r["node_id"], r["to_node_id"], r["detail"], r["at"]) for r in rows]


def _expected(n: int) -> list[tuple[Any, ...]]:
    return [(e.kind, e.node_id, e.to_node_id, e.detail, e.at) for e in _events(n)]


def _add(db: Database, task_id: str, n: int) -> str:
    with db.write() as conn:
        task_store.add_events(conn, task_id, _events(n), 0.0)
    return task_id


@pytest.mark.parametrize("per_job", [1, 3])
def test_a_batchs_events_are_one_statement_at_its_commit(
    db: Database, group: GroupCommit, writes: list[int], per_job: int
) -> None:
    async def main() -> list[str]:
        return await asyncio.gather(*(group.run(_add, db, f"t{i}", per_job) for i in range(12)))

    asyncio.run(main())
    assert group.batches == 1
    assert writes == [12 * per_job]  # one statement, every job's events, in any number
    for i in range(12):
        assert _stored(db, f"t{i}") == _expected(per_job)


def test_a_rolled_back_batch_writes_no_deferred_event(
    db: Database, group: GroupCommit, writes: list[int]
) -> None:
    def poisons() -> None:
        with db.write() as conn:
            task_store.add_events(conn, "bad", _events(2), 0.0)
            raise RuntimeError("the step failed")

    async def main() -> list[object]:
        jobs = [group.run(_add, db, "a", 2), group.run(poisons), group.run(_add, db, "b", 2)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(main())
    assert results[0] == "a" and results[2] == "b"
    assert isinstance(results[1], RuntimeError)
    assert group.poisoned == 1
    assert _stored(db, "bad") == []  # neither in the rolled-back batch nor alone
    assert _stored(db, "a") == _expected(2)  # once each, not once per attempt
    assert _stored(db, "b") == _expected(2)


def test_history_read_in_the_batch_sees_the_deferred_events(
    db: Database, group: GroupCommit
) -> None:
    def reads_back() -> tuple[list[str], str | None]:
        with db.write() as conn:
            task_store.add_events(conn, "t", [Event("transition", "a", "b")], 1.0)
            kinds = [row["kind"] for row in task_store.history(conn, "t")]
            return kinds, task_store.last_source(conn, "t", "b")

    async def main() -> list[object]:
        return list(await asyncio.gather(group.run(_add, db, "u", 1), group.run(reads_back)))

    assert asyncio.run(main())[1] == (["transition"], "a")
    assert group.batches == 1
    assert [row[0] for row in _stored(db, "t")] == ["transition"]  # written once


def test_deferred_rows_that_fail_to_be_written_run_every_job_alone(
    db: Database, group: GroupCommit
) -> None:
    # Which job deferred the bad row is not known when the batch writes them: each job
    # runs again alone, where its own write fails or not.
    def bad() -> None:
        with db.write() as conn:
            task_store.add_events(conn, "bad", [Event("k" * 40)], 1.0)  # kind: 30 at most

    async def main() -> list[object]:
        jobs = [group.run(_add, db, "a", 2), group.run(bad), group.run(_add, db, "b", 2)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(main())
    assert results[0] == "a" and results[2] == "b"
    assert isinstance(results[1], sqlalchemy.exc.DBAPIError)
    assert group.alone == 3
    assert _stored(db, "a") == _expected(2)
    assert _stored(db, "b") == _expected(2)
    assert _stored(db, "bad") == []


def test_a_purge_in_the_batch_writes_the_deferred_events_first(pg_url: str) -> None:
    """An event deferred for a task that a later job of the batch purges goes with it
    (else it would be written after the purge, for a task that no longer exists)."""
    rt = Runtime(Settings(database_url=pg_url))
    ensure_shipped(rt)
    created = asyncio.run(Service(rt).create_task("getting-callback", None, {}))
    task_id = created[0]["task_id"]
    with rt.db.write() as conn:
        task = task_store.get_task(conn, task_id)
        assert task is not None
        task.state, task.outcome, task.finished_at = "done", "success", 1.0
        assert task_store.save_task(conn, task, task.rev)
    pool = ThreadPoolExecutor(2)
    group = GroupCommit(rt.db, executor=pool, max_batches=2)

    def purge() -> int:
        with rt.db.write() as conn:
            return purge_batch(conn, 2.0, 10)

    async def main() -> list[object]:
        return list(await asyncio.gather(group.run(_add, rt.db, task_id, 1), group.run(purge)))

    try:
        assert asyncio.run(main()) == [task_id, 1]
        assert group.batches == 1
        assert _stored(rt.db, task_id) == []
    finally:
        pool.shutdown()
        rt.db.dispose()


def _track(db: Database, sid: str) -> str:
    with db.write() as conn:
        message_store.track(
            conn,
            sid=sid,
            account_sid="AC1",
            process_id=1,
            node_id="wait",
            status="queued",
            now=1,  # an int among floats: each array takes one type
            check_at=11.5,
        )
    return sid


def test_tracked_messages_are_one_statement_and_closed_in_order(
    db: Database, group: GroupCommit, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = _counted(monkeypatch, message_store, "_track_rows")

    def closes(sid: str) -> None:
        with db.write() as conn:
            message_store.note_status(conn, sid, "delivered")

    async def main() -> None:
        jobs = [group.run(_track, db, f"SM{i}") for i in range(4)]
        await asyncio.gather(*jobs, group.run(closes, "SM1"), group.run(_track, db, "SM1"))

    asyncio.run(main())
    assert group.batches == 1
    assert writes == [4, 1]  # before the close, then at the COMMIT
    with db.read() as conn:
        statuses = [message_store.get(conn, f"SM{i}") for i in range(4)]
    # Tracked, closed by a callback, tracked again (ignored): as if run one by one.
    assert [m.status if m else None for m in statuses] == [
        "queued",
        "delivered",
        "queued",
        "queued",
    ]
    with db.read() as conn:
        due = message_store.claim_due(conn, 20.0, 10, 30.0)
    assert sorted(m.sid for m in due) == ["SM0", "SM2", "SM3"]  # SM1 closed, final


class _Writer:
    def __init__(self, name: str, log: list[tuple[str, int]]) -> None:
        self.name, self.log = name, log

    def __call__(self, _conn: Any, rows: list[dict[str, Any]]) -> None:
        self.log.append((self.name, len(rows)))


def test_another_writer_of_a_table_writes_what_was_deferred_first() -> None:
    log: list[tuple[str, int]] = []
    first, second = _Writer("first", log), _Writer("second", log)
    batch = Optimistic()
    batch.defer(None, "t", [{}, {}], first)  # type: ignore[arg-type]
    batch.defer(None, "t", [{}], second)  # type: ignore[arg-type]
    batch.defer(None, "u", [{}], first)  # type: ignore[arg-type]
    batch.flush(None)  # type: ignore[arg-type]
    assert log == [("first", 2), ("second", 1), ("first", 1)]


def test_deferred_rows_failing_before_another_jobs_statement_run_every_job_alone(
    db: Database, group: GroupCommit
) -> None:
    # A later job's read writes the deferred rows first and they fail there (in Python,
    # before any statement: the transaction stays healthy); that job even swallows the
    # error. The batch must not commit without the rows it lost.
    def bad() -> None:
        with db.write() as conn:
            task_store.add_events(conn, "bad", [Event("note", at="soon")], 1.0)  # type: ignore[arg-type]

    def swallows() -> str:
        with db.write() as conn:
            try:
                task_store.history(conn, "a")
            except Exception:
                return "swallowed"
        return "read"

    async def main() -> list[object]:
        jobs = [group.run(_add, db, "a", 20), group.run(bad), group.run(swallows)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(main())
    assert results[0] == "a" and results[2] == "read"  # alone, nothing deferred
    assert isinstance(results[1], Exception)
    assert group.alone == 3
    assert _stored(db, "a") == _expected(20)
