"""Security headers on every response. A route that sets one itself (say, a console page
with its own Content-Security-Policy) keeps its value."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BASE_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    # JSON needs nothing: a response rendered by mistake as a page can run nothing.
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "cross-origin-resource-policy": "same-origin",
    # Task data is private: no shared cache may keep it.
    "cache-control": "no-store",
}
HSTS = ("strict-transport-security", "max-age=31536000")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, https: bool = False) -> None:
        self.app = app
        self.headers = dict(BASE_HEADERS)
        if https:  # only meaningful (and only honoured) when served over TLS
            self.headers[HSTS[0]] = HSTS[1]
        # As raw ASGI header pairs, encoded once: this runs on every response.
        self._raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _value in headers}
                headers.extend(pair for pair in self._raw if pair[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
