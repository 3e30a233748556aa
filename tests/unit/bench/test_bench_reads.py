"""``orchestrator.bench.reads`` and the report built from them, on both databases: only
the bench process's tasks created since the run began count."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert, select

from orchestrator.bench import reads, report
from orchestrator.bench.pg_watch import PgWatch
from orchestrator.bench.sql_counts import delta, sql_report
from orchestrator.store import tasks as task_store
from orchestrator.store.db import Database
from orchestrator.store.records import TaskRecord
from orchestrator.store.tables import process_versions, processes

STARTED = 1000.0


def _bench_process(db: Database, slug: str) -> tuple[int, int]:
    """(process id, version id) of ``slug``, created bare when missing."""
    with db.write() as conn:
        found = conn.execute(select(processes.c.id).where(processes.c.slug == slug)).first()
        if found is None:
            values = {"slug": slug, "title": slug, "current_version": 1}
            conn.execute(insert(processes).values(**values, created_at=0, updated_at=0))
            found = conn.execute(select(processes.c.id).where(processes.c.slug == slug)).one()
        process_id = int(found[0])
        version = conn.execute(
            select(process_versions.c.id).where(process_versions.c.process_id == process_id)
        ).first()
        if version is None:
            conn.execute(
                insert(process_versions).values(
                    process_id=process_id, version=1, definition="{}", checksum="x", created_at=0
                )
            )
            version = conn.execute(
                select(process_versions.c.id).where(process_versions.c.process_id == process_id)
            ).one()
    return process_id, int(version[0])


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


_task_ids = itertools.count(1)


def _add(db: Database, ids: tuple[int, int], n: int, **values: Any) -> None:
    with db.write() as conn:
        for _ in range(n):
            task_id = f"bench{next(_task_ids):019d}"
            record = TaskRecord(id=task_id, process_id=ids[0], version_id=ids[1], data={}, **values)
            task_store.insert_task(conn, record)


def test_progress_and_latencies_count_this_runs_bench_tasks_only(db: Database) -> None:
    bench = _bench_process(db, reads.BENCH_PROCESS)
    other = _bench_process(db, "another-process")
    done = {"state": "done", "node_id": "final", "updated_at": STARTED + 9}
    _add(db, bench, 3, **done, outcome="success", created_at=STARTED + 1, finished_at=STARTED + 3)
    _add(
        db, bench, 1, **done, outcome="escalation", created_at=STARTED + 2, finished_at=STARTED + 8
    )
    _add(db, bench, 2, state="waiting", node_id="wait", created_at=STARTED + 1, updated_at=STARTED)
    # An earlier run's task, and another process's: neither counts.
    _add(db, bench, 1, **done, outcome="success", created_at=STARTED - 5, finished_at=STARTED - 1)
    _add(db, other, 1, **done, outcome="success", created_at=STARTED + 1, finished_at=STARTED + 2)

    assert reads.count_in_state(db, "done", STARTED) == 4
    assert reads.count_in_state(db, "waiting", STARTED) == 2
    assert reads.count_in_state(db, "done") == 5  # since the beginning
    finished = reads.finished_since(db, STARTED)
    assert sorted(finished.latencies) == [2.0, 2.0, 2.0, 6.0]
    assert (finished.first, finished.last) == (STARTED + 1, STARTED + 8)
    assert finished.outcomes == {"success": 3, "escalation": 1}

    measured = report.Measured(
        tasks=4,
        failures=0,
        state="done",
        done=4,
        submit_seconds=1.0,
        finish_seconds=8.0,
        simulator={"messages_created": 4, "requests": 4, "callbacks_sent": 8},
        finished=finished,
        cpu={"server": 0.04, "api": 0.04, "engine": 0.0, "simulator": 0.008, "load client": 0.0},
        workers=0,
        pg_cpu=None,
        pg_enabled=False,
    )
    lines = report.results(measured)
    assert "throughput     0.6 round trips/s" in lines  # 4 in the 7 s from first to last
    assert "latency        p50 2000 ms, p99 6000 ms, mean 3000 ms" in lines
    assert "cpu per rt     server 10.0 ms, simulator 2.0 ms, load client 0.0 ms" in lines
    assert not any(line.startswith("server split") for line in lines)


def test_postgres_statistics_are_read_where_there_are_some(db: Database) -> None:
    pg = PgWatch(db)
    if not db.is_postgres:
        assert (pg.counters(), pg.cpu()) == ({}, None)
        return
    counters = pg.counters()
    assert counters["xact_commit"] > 0 and "tasks.n_tup_ins" in counters
    assert all(isinstance(pid, int) for pid, _shared in reads.pg_backends(db))
    pg.sample_cpu()  # this machine's /proc: readable, or skipped


def test_sql_counts_per_round_trip() -> None:
    before = {"stmt SELECT tasks": 10, "txn commit write": 2}
    after = {"stmt SELECT tasks": 30, "stmt UPDATE tasks": 40, "txn commit write": 12}
    counts = delta(after, before)
    assert counts == {"stmt SELECT tasks": 20, "stmt UPDATE tasks": 40, "txn commit write": 10}
    lines = sql_report({**counts, "shape write: UPDATE tasks": 10}, 10)
    assert lines[0].startswith("sql per rt     6.0 statements, 1.0 write + 0.0 read")
    assert "  by kind      UPDATE tasks 4.0, SELECT tasks 2.0" in lines
    assert "  transaction   1.0 x write: UPDATE tasks" in lines
