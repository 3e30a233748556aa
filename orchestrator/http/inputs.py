"""Refuse URLs carrying text no database can store (see orchestrator/textcheck.py).

Path parameters (task ids, refs, process names, the Corezoid login) and query values
reach queries as they are: a ``%00`` among them made PostgreSQL fail the request with a
500. Checked here once, for every route, before any handler runs: 400 INVALID_INPUT.
"""

from __future__ import annotations

import json
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.textcheck import problem


def url_problem(scope: Scope) -> str | None:
    found = problem(str(scope.get("path", "")))
    if found:
        return f"the URL path holds {found}"
    query: bytes = scope.get("query_string", b"")
    if b"%" in query or b"\x00" in query:
        decoded = unquote_to_bytes(query).decode("utf-8", "replace")
        found = problem(decoded)
        if found:
            return f"the query string holds {found}"
    return None


class UrlTextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = url_problem(scope) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": {"code": "INVALID_INPUT", "message": found}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
