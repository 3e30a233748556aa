"""Counts for the metrics scrape, each answered from an index (cheap at any table size).
SQL: store/sql/queries.sql."""

from __future__ import annotations

from sqlalchemy import Connection

from orchestrator.store import callbacks as inbox
from orchestrator.store import sql

Q = sql.QUERIES


def orphan_callbacks(conn: Connection) -> int:
    """Callbacks that found no task yet (engine/orphans.py keeps them bounded)."""
    return inbox.orphan_count(conn)


def process_slugs(conn: Connection) -> dict[int, str]:
    return {int(i): str(s) for i, s in sql.execute(conn, Q["process_slugs"]).fetchall()}


def state_counts(conn: Connection) -> list[tuple[int, str, str | None, int]]:
    """(process id, state, outcome, tasks) for every process (ix_tasks_process_state_outcome)."""
    rows = sql.execute(conn, Q["task_state_counts"]).fetchall()
    return [(int(p), str(s), o, int(n)) for p, s, o, n in rows]


def runnable_by_process(conn: Connection) -> dict[int, int]:
    """Active tasks (ready for, or in, a step) per process (read through the state index)."""
    return {int(p): int(n) for p, n in sql.execute(conn, Q["runnable_by_process"]).fetchall()}


def unsettled_callbacks_by_process(conn: Connection) -> dict[int, int]:
    """Callbacks stored but not yet applied (new, or pending their task) per process."""
    rows = sql.execute(conn, Q["unsettled_callbacks_by_process"]).fetchall()
    return {int(p): int(n) for p, n in rows}
