"""Purging finished tasks after the retention period, in small batches."""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from orchestrator.store.tables import callbacks, effects, task_events, tasks, twilio_messages


def purge_batch(conn: Connection, finished_before: float, batch: int) -> int:
    """Delete up to ``batch`` tasks finished before the cutoff, with their history,
    effects and callbacks. Returns how many tasks went; short transactions keep locks
    brief, so callers loop until it returns less than ``batch``."""
    ids = [
        r[0]
        for r in conn.execute(
            select(tasks.c.id)
            .where(tasks.c.state == "done", tasks.c.finished_at < finished_before)
            .order_by(tasks.c.finished_at)
            .limit(batch)
        )
    ]
    if ids:
        conn.execute(delete(task_events).where(task_events.c.task_id.in_(ids)))
        conn.execute(delete(effects).where(effects.c.task_id.in_(ids)))
        conn.execute(delete(callbacks).where(callbacks.c.applied_task_id.in_(ids)))
        conn.execute(delete(callbacks).where(callbacks.c.task_id.in_(ids)))
        conn.execute(delete(tasks).where(tasks.c.id.in_(ids)))
    # Callbacks that never found a task (stray or forged sids) age out the same way.
    stray = [
        r[0]
        for r in conn.execute(
            select(callbacks.c.id)
            .where(callbacks.c.status == "pending", callbacks.c.received_at < finished_before)
            .limit(batch)
        )
    ]
    if stray:
        conn.execute(delete(callbacks).where(callbacks.c.id.in_(stray)))
    # Sent messages the reconciliation sweep no longer needs (closed, or given up on).
    closed = [
        r[0]
        for r in conn.execute(
            select(twilio_messages.c.sid)
            .where(twilio_messages.c.final == 1, twilio_messages.c.created_at < finished_before)
            .limit(batch)
        )
    ]
    if closed:
        conn.execute(delete(twilio_messages).where(twilio_messages.c.sid.in_(closed)))
    return len(ids)
