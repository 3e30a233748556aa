"""Console sessions (services/sessions.py): the SHA-256 of a session id, its login and
its expiry."""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from orchestrator.store.tables import console_sessions

_BY_HASH = select(console_sessions.c.login, console_sessions.c.expires_at)


def open_session(conn: Connection, id_hash: str, login: str, now: float, expires: float) -> None:
    """Store a session; expired ones are swept on the way."""
    conn.execute(delete(console_sessions).where(console_sessions.c.expires_at < now))
    conn.execute(
        console_sessions.insert().values(
            id_hash=id_hash, login=login, created_at=now, expires_at=expires
        )
    )


def find(conn: Connection, id_hash: str) -> tuple[str, float] | None:
    """(login, expires at) of a stored session."""
    row = conn.execute(_BY_HASH.where(console_sessions.c.id_hash == id_hash)).first()
    return None if row is None else (str(row.login), float(row.expires_at))


def end_session(conn: Connection, id_hash: str) -> None:
    conn.execute(delete(console_sessions).where(console_sessions.c.id_hash == id_hash))
