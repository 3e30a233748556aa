"""Console sessions kept server-side, so logging out (or revoking the key) ends them at
once. The browser holds a random id; the database holds its SHA-256, the login and the
expiry. Any API process sharing the database accepts the session."""

from __future__ import annotations

import hashlib
import secrets
import time

from orchestrator.engine.runtime import Runtime
from orchestrator.services import apikeys
from orchestrator.store import sessions as session_store


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def open_session(rt: Runtime, login: str, lifetime: float) -> str:
    """A new session id for ``login``; expired sessions are swept on the way."""
    sid = secrets.token_urlsafe(32)
    now = time.time()
    with rt.db.write() as conn:
        session_store.open_session(conn, _hash(sid), login, now, lifetime)
    return sid


def session_key(rt: Runtime, sid: str | None, login: str) -> str | None:
    """The role of the key behind a live session of ``login``; None when the session was
    ended (logout, expiry) or the key was revoked."""
    if not sid:
        return None
    with rt.db.read() as conn:
        row = session_store.get_session(conn, _hash(sid))
    if row is None or row[0] != login or row[1] < time.time():
        return None
    return apikeys.role_of(rt, login)


def end_session(rt: Runtime, sid: str | None) -> None:
    if sid:
        with rt.db.write() as conn:
            session_store.end_session(conn, _hash(sid))
