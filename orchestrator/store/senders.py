"""Per-sender outbound slots: a token bucket of depth one, one row per sender.

``reserve`` runs in its own short write transaction and locks the sender's row (SQLite's
``BEGIN IMMEDIATE``, PostgreSQL's ``FOR UPDATE``), so workers in different processes take
successive slots and the sender's rate holds across all of them.

A send whose slot is too far away does not book it (a task that then fails or is
cancelled would leave a hole); it gets a *turn* instead: the ``queued_until`` column hands
out successive turns one interval apart, so a burst of deferred tasks wakes up spread
over time, each about when its slot comes, rather than all at once again and again.
"""

from __future__ import annotations

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from orchestrator.store.tables import sender_slots


def reserve(
    conn: Connection, sender: str, interval: float, now: float, horizon: float
) -> tuple[float, bool]:
    """(time, taken). ``taken``: the slot at ``time`` (at most ``horizon`` away) is this
    send's. Otherwise ``time`` is this send's turn: come back a little before it."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    row = {"sender": sender, "next_at": 0.0, "queued_until": 0.0}
    conn.execute(insert(sender_slots).values(**row).on_conflict_do_nothing())
    stmt = select(sender_slots.c.next_at, sender_slots.c.queued_until).where(
        sender_slots.c.sender == sender
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    next_at, queued_until = conn.execute(stmt).one()
    slot = max(now, float(next_at))
    where = sender_slots.c.sender == sender
    if slot - now <= horizon:
        conn.execute(update(sender_slots).where(where).values(next_at=slot + interval))
        return slot, True
    turn = max(float(queued_until) + interval, slot)
    conn.execute(update(sender_slots).where(where).values(queued_until=turn))
    return turn, False
