"""API keys (minimal): ORCH_API_KEYS = "login:secret,..." and the loopback rule.

The console depends only on these three functions; a fuller key store may replace this
module as long as it keeps them.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import Request

from orchestrator.engine.runtime import Runtime


def _pairs(rt: Runtime) -> list[tuple[str, str]]:
    raw = rt.settings.api_keys or ""
    pairs = []
    for item in raw.split(","):
        login, sep, secret = item.strip().partition(":")
        if sep and login and secret:
            pairs.append((login, secret))
    return pairs


def keys_configured(rt: Runtime) -> bool:
    return bool(_pairs(rt))


def verify_secret(rt: Runtime, secret: str) -> str | None:
    """The login owning ``secret``, or None. Every key is compared (in constant time) so
    the answer's timing does not tell which one nearly matched."""
    found = None
    for login, known in _pairs(rt):
        if hmac.compare_digest(known.encode(), secret.encode()):
            found = login
    return found


def is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
