"""Purging finished tasks after the retention period, in small batches.
SQL: store/sql/queries.sql."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from orchestrator.store import callbacks as inbox
from orchestrator.store import sql

Q = sql.QUERIES

# What a plugin purges with each batch: (conn, finished_before, batch) -> rows deleted.
# The Twilio plugin drops the sent messages its sweep no longer needs.
Purge = Callable[[Connection, float, int], int]
PLUGIN_PURGES: list[Purge] = []

_OF_TASKS = (
    "delete_events_of_tasks",
    "delete_effects_of_tasks",
    "delete_callbacks_applied_to_tasks",
    "delete_callbacks_of_tasks",
    "delete_tasks",
)


def purge_batch(conn: Connection, finished_before: float, batch: int) -> int:
    """Delete up to ``batch`` tasks finished before the cutoff, with their history,
    effects and callbacks. Returns how many tasks went; short transactions keep locks
    brief, so callers loop until it returns less than ``batch``."""
    params = {"before": finished_before, "limit": batch}
    ids = sql.column(sql.execute(conn, Q["finished_task_ids"], params))
    if ids:
        marks, numbered = sql.marks("i", len(ids)), sql.numbered("i", ids)
        for name in _OF_TASKS:
            sql.execute(conn, Q[name].fill(ids=marks), numbered)
    # Callbacks that never found a task (stray or forged sids) age out the same way.
    inbox.delete_ids(
        conn, [int(i) for i in sql.column(sql.execute(conn, Q["stray_callback_ids"], params))]
    )
    for purge in PLUGIN_PURGES:
        purge(conn, finished_before, batch)
    return len(ids)
