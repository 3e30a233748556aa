"""Per-sender outbound slots: a token bucket of depth one, one row per sender.

``reserve`` runs in its own short write transaction and locks the sender's row (SQLite's
``BEGIN IMMEDIATE``, PostgreSQL's ``FOR UPDATE``), so workers in different processes take
successive slots and the sender's rate holds across all of them.
"""

from __future__ import annotations

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from orchestrator.store.tables import sender_slots


def reserve(conn: Connection, sender: str, interval: float, now: float, horizon: float) -> float:
    """The time this send may go out. The slot is taken only when it is at most
    ``horizon`` seconds away; a later slot is returned without taking it (the caller
    comes back then), so waiting tasks never book the sender far ahead."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(sender_slots).values(sender=sender, next_at=0.0).on_conflict_do_nothing())
    stmt = select(sender_slots.c.next_at).where(sender_slots.c.sender == sender)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    next_at = float(conn.execute(stmt).scalar_one())
    slot = max(now, next_at)
    if slot - now <= horizon:
        conn.execute(
            update(sender_slots)
            .where(sender_slots.c.sender == sender)
            .values(next_at=slot + interval)
        )
    return slot
