"""Console sessions: a signed cookie holding the login, a CSRF token, an expiry and, once
logged in, the id of a server-side session (services/sessions.py).

The cookie is HMAC-signed with a key derived from the server secret (changing the secret
ends every session). A logged-in cookie is only honoured while its server-side session
exists: logging out deletes it, so a copied cookie stops working at once. Visitors who
are not logged in keep no server state (their cookie only carries the CSRF token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from orchestrator.crypto import derived_key

COOKIE = "orch_console"
LIFETIME = 12 * 3600.0


@dataclass(frozen=True)
class Session:
    login: str | None  # None: not logged in (keys exist) or no keys at all
    csrf: str
    expires: float
    sid: str | None = None  # the server-side session of a logged-in visitor


def _sign(key: bytes, payload: bytes) -> str:
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def encode(server_secret: str, session: Session) -> str:
    raw = json.dumps([session.login, session.csrf, session.expires, session.sid]).encode()
    body = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return f"{body}.{_sign(derived_key(server_secret, 'console-session'), body.encode())}"


def decode(server_secret: str, value: str | None, now: float | None = None) -> Session | None:
    """The session in a cookie, or None when it is missing, forged or expired."""
    if not value or "." not in value:
        return None
    body, sig = value.rsplit(".", 1)
    expected = _sign(derived_key(server_secret, "console-session"), body.encode())
    if not hmac.compare_digest(expected, sig):
        return None
    try:
        login, csrf, expires, sid = json.loads(
            base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        )
    except (ValueError, TypeError):
        return None
    if not isinstance(csrf, str) or not isinstance(expires, int | float):
        return None
    if expires < (now if now is not None else time.time()):
        return None
    return Session(
        login if isinstance(login, str) else None,
        csrf,
        float(expires),
        sid if isinstance(sid, str) else None,
    )


def new_session(login: str | None, sid: str | None = None) -> Session:
    return Session(login, secrets.token_urlsafe(24), time.time() + LIFETIME, sid)


def set_cookie(response: Response, request: Request, server_secret: str, s: Session) -> None:
    response.set_cookie(
        COOKIE,
        encode(server_secret, s),
        max_age=int(LIFETIME),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")


def csrf_ok(session: Session, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(session.csrf, given)
