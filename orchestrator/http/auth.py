"""Who may call /api/v1: a Bearer API key when any key exists; with none, loopback only.

Webhooks are not covered here: their URLs carry a per-node hash and Twilio's form is
signed. The Corezoid API signs each request with the key's secret (http/corezoid.py).
"""

from __future__ import annotations

import functools
import ipaddress
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.services import apikeys
from orchestrator.services.access import Access

log = logging.getLogger("orchestrator.http")

PROTECTED_PREFIX = "/api/v1"
# Seed 003's Twilio package API is reached with the same keys.
PROTECTED_PREFIXES = (PROTECTED_PREFIX, "/api/twilio")
# Set by a reverse proxy: a request carrying one came from elsewhere, whatever the peer.
FORWARD_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
_FORWARD_RAW = frozenset(h.encode() for h in FORWARD_HEADERS)
ANONYMOUS = "anonymous"


# What the middleware compares a path with (PROTECTED_PREFIXES, or a path under one).
_PROTECTED_EXACT = frozenset(PROTECTED_PREFIXES)
_PROTECTED_UNDER = tuple(prefix + "/" for prefix in PROTECTED_PREFIXES)

# Methods a read-only key may use.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_loopback(request: Request) -> bool:
    """The peer is this machine and no proxy forwarded the request."""
    return _is_loopback(request.scope)


def _is_loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client or not client[0] or not _loopback_host(client[0]):
        return False
    # Header names in an ASGI scope are lowercase (what Request.headers matches on).
    return not any(name in _FORWARD_RAW for name, _value in scope.get("headers", ()))


@functools.lru_cache(maxsize=256)  # the same few peers, on every request
def _loopback_host(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def audit_source(request: Request, channel: str = "api") -> str:
    """``channel:login@ip`` for the task history (login ``anonymous`` in loopback mode)."""
    login = getattr(request.state, "api_key", None) or ANONYMOUS
    return f"{channel}:{login}@{client_ip(request)}"


def bearer_token(request: Request) -> str | None:
    return _bearer(request.scope)


def _bearer(scope: Scope) -> str | None:
    """The Bearer token of the Authorization header ("" for another scheme), else None.
    Read from the scope's raw headers: the first one, as Request.headers.get gives it."""
    for name, raw in scope.get("headers", ()):
        if name == b"authorization":
            value = raw.decode("latin-1")
            break
    else:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _deny(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="orchestrator"'} if status == 401 else None
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


class ApiAuthMiddleware:
    """Checks every /api/v1 request before its body is read; sets ``request.state.api_key``
    to the caller's login (None in loopback mode) and ``api_role`` to its role. A read
    key gets 403 FORBIDDEN for anything but GET."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (
            path.startswith(_PROTECTED_UNDER) or path in _PROTECTED_EXACT
        ):
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        denial = None
        login = None
        role = apikeys.OPERATE
        if token is not None:
            found = await self.access.key_for_secret(token)
            if found is None:
                denial = _deny(401, "INVALID_API_KEY", "the API key is unknown or revoked")
            else:
                login, role = found
                if role == apikeys.READ and scope.get("method", "GET") not in READ_METHODS:
                    denial = _deny(
                        403,
                        "FORBIDDEN",
                        f"the API key {login!r} may only read (role read); "
                        "this needs an operate key",
                    )
        elif await self.access.keys_configured():
            denial = _deny(401, "UNAUTHORIZED", "send Authorization: Bearer <API key secret>")
        elif not _is_loopback(scope):
            denial = _deny(
                403,
                "LOOPBACK_ONLY",
                "no API key is configured, so only loopback clients may call the API; "
                "create one with `orchestrator apikey create`",
            )
        if denial is not None:
            await denial(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["api_key"], state["api_role"] = login, role
        await self.app(scope, receive, send)


async def warn_if_open(access: Access) -> None:
    """Say loudly, on start, that the API has no key (or that no key can get in)."""
    if await access.keys_configured():
        if not await access.any_active_key():
            log.warning(
                "every API key is revoked: /api/v1 refuses all requests until one is "
                "created with `orchestrator apikey create`"
            )
        return
    log.warning(
        "!!! NO API KEY IS CONFIGURED: /api/v1 accepts unauthenticated calls from loopback "
        "clients (and refuses all others). Behind a reverse proxy on this host that does not "
        "set X-Forwarded-For, every client would look local. Create a key with "
        "`orchestrator apikey create` or set ORCH_API_KEYS=login:secret. !!!"
    )
