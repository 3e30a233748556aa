"""Console sessions kept server-side, so logging out (or revoking the key) ends them at
once. The browser holds a random id; the database holds its SHA-256, the login and the
expiry (store/sessions.py). Any API process sharing the database accepts the
session."""

from __future__ import annotations

import hashlib
import secrets
import time

from orchestrator.services import apikeys
from orchestrator.services.apikeys import KeyContext
from orchestrator.store import sessions as session_store


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def open_session(ctx: KeyContext, login: str, lifetime: float) -> str:
    """A new session id for ``login``; expired sessions are swept on the way."""
    sid = secrets.token_urlsafe(32)
    now = time.time()
    with ctx.db.write() as conn:
        session_store.open_session(conn, _hash(sid), login, now, lifetime)
    return sid


def session_key(ctx: KeyContext, sid: str | None, login: str) -> str | None:
    """The role of the key behind a live session of ``login``; None when the session was
    ended (logout, expiry) or the key was revoked."""
    if not sid:
        return None
    with ctx.db.read() as conn:
        found = session_store.get_session(conn, _hash(sid))
    if found is None or found[0] != login or found[1] < time.time():
        return None
    return apikeys.role_of(ctx, login)


def end_session(ctx: KeyContext, sid: str | None) -> None:
    if sid:
        with ctx.db.write() as conn:
            session_store.end_session(conn, _hash(sid))
