"""Per-sender outbound slots: a token bucket of depth one, one row per sender.

``reserve`` runs in its own short write transaction and locks the sender's row (SQLite's
``BEGIN IMMEDIATE``, PostgreSQL's ``FOR UPDATE``), so workers in different processes take
successive slots and the sender's rate holds across all of them.

A send whose slot is too far away does not book it (a task that then fails or is
cancelled would leave a hole); it gets a *turn* instead: the ``queued_until`` column hands
out successive turns one interval apart, so a burst of deferred tasks wakes up spread
over time, each about when its slot comes, rather than all at once again and again.
SQL: store/sql/queries.sql.
"""

from __future__ import annotations

from sqlalchemy import Connection

from orchestrator.store import sql

Q = sql.QUERIES


def reserve(
    conn: Connection, sender: str, interval: float, now: float, horizon: float
) -> tuple[float, bool]:
    """(time, taken). ``taken``: the slot at ``time`` (at most ``horizon`` away) is this
    send's. Otherwise ``time`` is this send's turn: come back a little before it."""
    key = {"sender": sender}
    sql.execute(conn, Q["insert_sender_slot"], key)
    next_at, queued_until = sql.execute(conn, Q["sender_slot"], key, lock=True).fetchone()
    slot = max(now, float(next_at))
    if slot - now <= horizon:
        sql.execute(conn, Q["set_sender_next_at"], {**key, "next_at": slot + interval})
        return slot, True
    turn = max(float(queued_until) + interval, slot)
    sql.execute(conn, Q["set_sender_queued_until"], {**key, "queued_until": turn})
    return turn, False
