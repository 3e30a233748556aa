"""Console sessions (services/sessions.py): a session id's hash, its login, its expiry.
SQL: store/sql/queries.sql."""

from __future__ import annotations

from sqlalchemy import Connection

from orchestrator.store import sql

Q = sql.QUERIES


def open_session(conn: Connection, id_hash: str, login: str, now: float, lifetime: float) -> None:
    """Store a new session; expired ones are swept on the way."""
    sql.execute(conn, Q["delete_expired_sessions"], {"now": now})
    params = {"id_hash": id_hash, "login": login, "now": now, "expires_at": now + lifetime}
    sql.execute(conn, Q["insert_session"], params)


def get_session(conn: Connection, id_hash: str) -> tuple[str, float] | None:
    """(login, expires_at) of the session, or None."""
    row = sql.execute(conn, Q["session"], {"id_hash": id_hash}).fetchone()
    return (str(row[0]), float(row[1])) if row else None


def end_session(conn: Connection, id_hash: str) -> None:
    sql.execute(conn, Q["delete_session"], {"id_hash": id_hash})
