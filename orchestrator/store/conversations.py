"""Two-way SMS state (SPEC §10): tasks listening for replies, and opt-outs per pair.

A listener is (task, the person's number, our number). The oldest listener of a pair
takes the next message of that pair: ``take`` deletes it, and only the transaction whose
delete removed the row has it (several engines may race for the same listener).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from orchestrator.store import sql
from orchestrator.store.tables import reply_listeners, sms_opt_outs

# Candidates read per look-up: more than one, so a listener of a finished task (left
# behind by a repair) does not cost a round trip each.
CANDIDATES = 5


def listen(conn: Connection, task_id: str, from_number: str, to_number: str, now: float) -> bool:
    """Make the task listen for the next message from ``from_number`` to ``to_number``.
    Already listening on that pair: nothing changes (it keeps its place in the queue).
    True when a listener was added or moved to this pair."""
    row = conn.execute(
        select(reply_listeners.c.from_number, reply_listeners.c.to_number).where(
            reply_listeners.c.task_id == task_id
        )
    ).first()
    if row is not None and (row[0], row[1]) == (from_number, to_number):
        return False
    if row is not None:
        conn.execute(delete(reply_listeners).where(reply_listeners.c.task_id == task_id))
    conn.execute(
        reply_listeners.insert().values(
            task_id=task_id, from_number=from_number, to_number=to_number, created_at=now
        )
    )
    return True


def oldest(conn: Connection, from_number: str, to_number: str) -> list[str]:
    """Task ids listening on the pair, oldest first (no lock: see ``take``)."""
    stmt = (
        select(reply_listeners.c.task_id)
        .where(
            reply_listeners.c.from_number == from_number,
            reply_listeners.c.to_number == to_number,
        )
        .order_by(reply_listeners.c.created_at, reply_listeners.c.task_id)
        .limit(CANDIDATES)
    )
    return [str(r[0]) for r in conn.execute(stmt)]


def take(conn: Connection, task_id: str, from_number: str, to_number: str) -> bool:
    """Remove the task's listener on the pair; True only for the caller that removed it."""
    stmt = delete(reply_listeners).where(
        reply_listeners.c.task_id == task_id,
        reply_listeners.c.from_number == from_number,
        reply_listeners.c.to_number == to_number,
    )
    return bool(conn.execute(stmt).rowcount == 1)


def forget(conn: Connection, task_id: str) -> None:
    """A finished task listens no more."""
    conn.execute(delete(reply_listeners).where(reply_listeners.c.task_id == task_id))


def is_listened(conn: Connection, from_number: str, to_number: str) -> bool:
    return bool(oldest(conn, from_number, to_number))


# -- opt-outs ------------------------------------------------------------------------------
def opt_out(conn: Connection, recipient: str, sender: str, source: str, now: float) -> None:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(sms_opt_outs).values(
        recipient=recipient, sender=sender, source=source, created_at=now
    )
    conn.execute(stmt.on_conflict_do_nothing())


def opt_in(conn: Connection, recipient: str, sender: str) -> bool:
    stmt = delete(sms_opt_outs).where(
        sms_opt_outs.c.recipient == recipient, sms_opt_outs.c.sender == sender
    )
    return bool(conn.execute(stmt).rowcount)


# Checked before every send: plain SQL (see store/sql.py).
_OPTED_OUT = sql.Statement(
    "SELECT sender FROM sms_opt_outs WHERE recipient = :recipient AND sender IN (:a, :b)"
)


def opted_out(conn: Connection, recipient: str, senders: list[str]) -> str | None:
    """The first of ``senders`` (one or two: a number, a messaging service) the recipient
    opted out of, or None."""
    if not senders:
        return None
    params = {"recipient": recipient, "a": senders[0], "b": senders[-1]}
    found = {str(r[0]) for r in sql.execute(conn, _OPTED_OUT, params).fetchall()}
    return next((s for s in senders if s in found), None)


def list_opt_outs(
    conn: Connection, *, recipient: str | None = None, sender: str | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    stmt = select(sms_opt_outs).order_by(sms_opt_outs.c.created_at.desc()).limit(limit)
    if recipient:
        stmt = stmt.where(sms_opt_outs.c.recipient == recipient)
    if sender:
        stmt = stmt.where(sms_opt_outs.c.sender == sender)
    return [dict(r._mapping) for r in conn.execute(stmt)]
