"""Request latency by route template and status (orchestrator_http_request_duration_seconds).

A plain ASGI middleware: it reads the status from the response start and the matched
route from the scope (Starlette's router puts it there), so a callback URL counts under
``/api/1/json/plugins/twilio/{conv_id}/{hash}``, never under its own hash.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.metrics import Metrics

UNMATCHED = "unmatched"


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.observe = metrics.http
        self._status_texts: dict[int, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the answer began: the server error page

        async def send_watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_watched)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            text = self._status_texts.get(status)
            if text is None:
                text = self._status_texts[status] = str(status)
            self.observe(template, scope["method"], text).observe(time.perf_counter() - started)
