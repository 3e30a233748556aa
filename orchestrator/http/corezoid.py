"""The Corezoid-compatible task API (SPEC §7):
``POST /api/{1|2}/json/{login}/{time}/{signature}`` with ``{"ops": [...]}``.

signature = hex(sha1(time + secret + raw body + secret)), with ``time`` exactly as it
appears in the path (the PyPI ``corezoid`` client sends ``time.time()``, a float). The
body is JSON whatever the Content-Type says (Corezoid's own examples send several).
Refusals of the caller (unknown login, bad signature, time outside the window, replay)
are 403 with ``request_proc: access_denied``; a package that is not ``{"ops": [...]}``
is 200 ``format_error`` (as Corezoid answers; the PyPI client re-sends ops after any
non-200, which would repeat a bad package forever).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchestrator.http.auth import audit_source
from orchestrator.services import apikeys
from orchestrator.services.access import Access
from orchestrator.services.corezoid import FormatError, format_error, parse_package, parse_time
from orchestrator.services.corezoid import run_package as run_ops
from orchestrator.services.tasks import Service

# Compared against when the login is unknown, so both refusals take the same time.
_NO_SECRET = "\x00unknown-login\x00"


def _denied(description: str) -> JSONResponse:
    return JSONResponse(
        {"request_proc": "access_denied", "description": description, "ops": []},
        status_code=403,
    )


def expected_signature(time_text: str, secret: str, body: bytes) -> str:
    return hashlib.sha1((time_text + secret).encode() + body + secret.encode()).hexdigest()


async def corezoid_api(request: Request) -> JSONResponse:
    service: Service = request.app.state.service
    access: Access = request.app.state.access
    p = request.path_params
    login, time_text, signature = p["login"], p["time"], p["signature"]
    raw = await request.body()
    now = time.time()
    signed_at = parse_time(time_text)
    if signed_at is None:
        return _denied("the time in the URL must be Unix seconds")
    window = access.corezoid_window
    if window > 0 and abs(now - signed_at) > window:
        return _denied(
            f"the time in the URL is {abs(now - signed_at):.0f} s away from the server's "
            f"clock (allowed: {window:g} s)"
        )
    secret = await access.secret_for_login(login)
    expected = expected_signature(time_text, secret or _NO_SECRET, raw)
    matches = hmac.compare_digest(expected.encode(), signature.lower().encode())
    if secret is None or not matches:
        return _denied("unknown login or wrong signature")
    if window > 0:
        key = hashlib.sha256(f"{login}:{signature.lower()}".encode()).hexdigest()
        if not await access.first_sighting(key, now, window):
            return _denied("this request was received before (a replay)")
    try:
        ops = parse_package(raw)
    except FormatError as exc:
        return JSONResponse(format_error(str(exc)))
    if any(not isinstance(op, dict) or op.get("type") != "show" for op in ops):
        if await access.role_of(login) == apikeys.READ:
            return _denied(f"the API key {login!r} may only read (role read): show ops only")
    request.state.api_key = login
    result = await run_ops(service, ops, audit_source(request, "corezoid"))
    return JSONResponse(result)


routes = [
    Route(f"/api/{v}/json/{{login}}/{{time}}/{{signature}}", corezoid_api, methods=["POST"])
    for v in (1, 2)
]
