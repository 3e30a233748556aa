"""Sent messages awaiting a final status, for the reconciliation sweep, and the account
that sent each message or call (its callbacks are verified with that account's token).
SQL: orchestrator/twilio/queries.sql.

Importing this module hooks it into the core store: a sent message rides with its
effect's result (``result["track"]``, written in the step's own commit) and closed
messages are purged with each retention batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import NoResultFound

from orchestrator.store import effects, retention, sql
from orchestrator.store.savepoint import arrays, write_or_defer

Q = sql.load(__package__ or "orchestrator.twilio")

FINAL_STATUSES = ("delivered", "undelivered", "failed", "canceled", "read")


@dataclass(frozen=True)
class OpenMessage:
    sid: str
    account_sid: str
    process_id: int
    node_id: str
    status: str


def _open(m: Mapping[str, Any]) -> OpenMessage:
    return OpenMessage(m["sid"], m["account_sid"], m["process_id"], m["node_id"], m["status"])


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
    write_or_defer(conn, "twilio_messages", [params], _track_rows)


_TRACKED = ("sid", "account_sid", "process_id", "node_id", "status", "final", "now", "check_at")


def _track_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if len(rows) == 1:
        sql.execute(conn, Q["track_message"], rows[0])
        return
    sql.execute(conn, Q["track_messages_unnest"], arrays(rows, _TRACKED, ("now", "check_at")))


def _track_effect(conn: Connection, tracking: Mapping[str, Any]) -> None:
    track(conn, **tracking)


def sender(conn: Connection, sid: str) -> str | None:
    """The account that sent the message or call ``sid``, when this engine sent it."""
    value = sql.scalar(sql.execute(conn, Q["message_sender"], {"sid": sid}))
    return None if value is None else str(value)


def note_status(conn: Connection, sid: str, status: str) -> None:
    """A callback arrived: a final status closes the message (the sweep skips it)."""
    if status in FINAL_STATUSES:
        sql.execute(conn, Q["close_message"], {"sid": sid, "status": status})


def claim_due(conn: Connection, now: float, limit: int, recheck_at: float) -> list[OpenMessage]:
    """Open messages due for a look, each pushed to ``recheck_at`` so that no other
    worker takes it meanwhile (PostgreSQL skips rows another sweep holds)."""
    params = {"now": now, "limit": limit}
    due = [_open(m) for m in sql.mappings(sql.execute(conn, Q["due_messages"], params, lock=True))]
    if due:
        stmt = Q["recheck_messages_at"].fill(sids=sql.marks("s", len(due)))
        sids = sql.numbered("s", [m.sid for m in due])
        sql.execute(conn, stmt, {**sids, "check_at": recheck_at})
    return due


def set_status(conn: Connection, sid: str, status: str, *, final: bool = False) -> None:
    """Record what a fetch found; ``final`` closes the message whatever its status."""
    params = {"sid": sid, "status": status, "final": int(final or status in FINAL_STATUSES)}
    sql.execute(conn, Q["set_message_status"], params)


def created_at(conn: Connection, sid: str) -> float:
    row = sql.execute(conn, Q["message_created_at"], {"sid": sid}).fetchone()
    if row is None:
        raise NoResultFound(f"no message {sid!r}")
    return float(row[0])


def get(conn: Connection, sid: str) -> OpenMessage | None:
    row = sql.first(sql.execute(conn, Q["message"], {"sid": sid}))
    return _open(row) if row else None


def recheck_open(conn: Connection, *, created_from: float, created_before: float, at: float) -> int:
    """Bring forward to ``at`` the look at every open message sent in
    [``created_from``, ``created_before``) that is not due sooner; returns how many."""
    params = {"created_from": created_from, "created_before": created_before, "at": at}
    return int(sql.execute(conn, Q["recheck_open_messages"], params).rowcount)


def purge_closed(conn: Connection, created_before: float, limit: int) -> int:
    """Delete up to ``limit`` messages the sweep no longer needs (closed, or given up on)
    sent before the cutoff; how many went."""
    params = {"before": created_before, "limit": limit}
    sids = sql.column(sql.execute(conn, Q["closed_message_sids"], params))
    if sids:
        stmt = Q["delete_messages"].fill(sids=sql.marks("s", len(sids)))
        sql.execute(conn, stmt, sql.numbered("s", sids))
    return len(sids)


effects.RESULT_WRITERS["track"] = _track_effect
if purge_closed not in retention.PLUGIN_PURGES:
    retention.PLUGIN_PURGES.append(purge_closed)
