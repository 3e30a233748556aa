"""Sent messages awaiting a final status, for the reconciliation sweep, and the account
that sent each message or call (its callbacks are verified with that account's token)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select, update

from orchestrator.store import sql
from orchestrator.store.tables import twilio_messages

FINAL_STATUSES = ("delivered", "undelivered", "failed", "canceled", "read")


# Once per message sent and per callback: plain SQL (see store/sql.py).
_TRACK = sql.Statement(
    "INSERT INTO twilio_messages (sid, account_sid, process_id, node_id, status, final, "
    "created_at, check_at) VALUES (:sid, :account_sid, :process_id, :node_id, :status, "
    ":final, :now, :check_at) ON CONFLICT DO NOTHING"
)
_SENDER = sql.Statement("SELECT account_sid FROM twilio_messages WHERE sid = :sid")
_CLOSE = sql.Statement(
    "UPDATE twilio_messages SET status = :status, final = 1 WHERE sid = :sid AND final = 0"
)


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
    final: bool = False,
) -> None:
    """Record a sent message (open for the sweep) or call (``final``: recorded only for
    its sender, see ``twilio/callback_sender``)."""
    # Open even when the create answer (or an adopted message) is already final: only
    # a callback reaching the wait node, or the sweep, closes it.
    params = {
        "final": int(final),
        "sid": sid,
        "account_sid": account_sid,
        "process_id": process_id,
        "node_id": node_id,
        "status": status,
        "now": now,
        "check_at": check_at,
    }
    sql.execute(conn, _TRACK, params)


def sender(conn: Connection, sid: str) -> str | None:
    """The account that sent the message or call ``sid``, when this engine sent it."""
    row = sql.first(sql.execute(conn, _SENDER, {"sid": sid}))
    return str(row["account_sid"]) if row else None


def note_status(conn: Connection, sid: str, status: str) -> None:
    """A callback arrived: a final status closes the message (the sweep skips it)."""
    if status in FINAL_STATUSES:
        sql.execute(conn, _CLOSE, {"sid": sid, "status": status})


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


def recheck_open(conn: Connection, *, created_from: float, created_before: float, at: float) -> int:
    """Bring forward to ``at`` the look at every open message sent in
    [``created_from``, ``created_before``) that is not due sooner; returns how many."""
    result = conn.execute(
        update(twilio_messages)
        .where(
            twilio_messages.c.final == 0,
            twilio_messages.c.created_at >= created_from,
            twilio_messages.c.created_at < created_before,
            twilio_messages.c.check_at > at,
        )
        .values(check_at=at)
    )
    return int(result.rowcount or 0)
