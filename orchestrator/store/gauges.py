"""Counts for the metrics scrape, each answered from an index (cheap at any table size)."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from orchestrator.store import callbacks as inbox
from orchestrator.store.tables import callbacks, processes, tasks


def orphan_callbacks(conn: Connection) -> int:
    """Callbacks that found no task yet (engine/orphans.py keeps them bounded)."""
    return inbox.orphan_count(conn)


def process_slugs(conn: Connection) -> dict[int, str]:
    return {int(i): str(s) for i, s in conn.execute(select(processes.c.id, processes.c.slug))}


def state_counts(conn: Connection) -> list[tuple[int, str, str | None, int]]:
    """(process id, state, outcome, tasks) for every process (ix_tasks_process_state_outcome)."""
    stmt = select(tasks.c.process_id, tasks.c.state, tasks.c.outcome, func.count()).group_by(
        tasks.c.process_id, tasks.c.state, tasks.c.outcome
    )
    return [(int(p), str(s), o, int(n)) for p, s, o, n in conn.execute(stmt)]


def runnable_by_process(conn: Connection) -> dict[int, int]:
    """Active tasks (ready for, or in, a step) per process (read through the state index)."""
    stmt = (
        select(tasks.c.process_id, func.count())
        .where(tasks.c.state == "active")
        .group_by(tasks.c.process_id)
    )
    return {int(p): int(n) for p, n in conn.execute(stmt)}


def unsettled_callbacks_by_process(conn: Connection) -> dict[int, int]:
    """Callbacks stored but not yet applied (new, or pending their task) per process."""
    stmt = (
        select(callbacks.c.process_id, func.count())
        .where(callbacks.c.status.in_(("new", "pending")))
        .group_by(callbacks.c.process_id)
    )
    return {int(p): int(n) for p, n in conn.execute(stmt)}
