"""Sent messages awaiting a final status, for the reconciliation sweep."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from orchestrator.store.tables import twilio_messages

FINAL_STATUSES = ("delivered", "undelivered", "failed", "canceled", "read")


@dataclass(frozen=True)
class OpenMessage:
    sid: str
    account_sid: str
    process_id: int
    node_id: str
    status: str


def track(
    conn: Connection,
    *,
    sid: str,
    account_sid: str,
    process_id: int,
    node_id: str,
    status: str,
    now: float,
    check_at: float,
) -> None:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    values = {
        "sid": sid,
        "account_sid": account_sid,
        "process_id": process_id,
        "node_id": node_id,
        "status": status,
        # Open even when the create answer (or an adopted message) is already final: only
        # a callback reaching the wait node, or the sweep, closes it.
        "final": 0,
        "created_at": now,
        "check_at": check_at,
    }
    conn.execute(insert(twilio_messages).values(**values).on_conflict_do_nothing())


def note_status(conn: Connection, sid: str, status: str) -> None:
    """A callback arrived: a final status closes the message (the sweep skips it)."""
    if status in FINAL_STATUSES:
        conn.execute(
            update(twilio_messages)
            .where(twilio_messages.c.sid == sid, twilio_messages.c.final == 0)
            .values(status=status, final=1)
        )


def claim_due(conn: Connection, now: float, limit: int, recheck_at: float) -> list[OpenMessage]:
    """Open messages due for a look, each pushed to ``recheck_at`` so that no other
    worker takes it meanwhile (PostgreSQL skips rows another sweep holds)."""
    stmt = (
        select(twilio_messages)
        .where(twilio_messages.c.final == 0, twilio_messages.c.check_at <= now)
        .order_by(twilio_messages.c.check_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = conn.execute(stmt).all()
    if rows:
        conn.execute(
            update(twilio_messages)
            .where(twilio_messages.c.sid.in_([r.sid for r in rows]))
            .values(check_at=recheck_at)
        )
    return [OpenMessage(r.sid, r.account_sid, r.process_id, r.node_id, r.status) for r in rows]


def set_status(conn: Connection, sid: str, status: str, *, final: bool = False) -> None:
    """Record what a fetch found; ``final`` closes the message whatever its status."""
    conn.execute(
        update(twilio_messages)
        .where(twilio_messages.c.sid == sid)
        .values(status=status, final=int(final or status in FINAL_STATUSES))
    )


def created_at(conn: Connection, sid: str) -> float:
    stmt = select(twilio_messages.c.created_at).where(twilio_messages.c.sid == sid)
    return float(conn.execute(stmt).scalar_one())


def get(conn: Connection, sid: str) -> OpenMessage | None:
    row = conn.execute(select(twilio_messages).where(twilio_messages.c.sid == sid)).first()
    if row is None:
        return None
    return OpenMessage(row.sid, row.account_sid, row.process_id, row.node_id, row.status)
