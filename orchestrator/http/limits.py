"""Request bodies are bounded in size and in time, before anything reads them.

- Over the configured size: 413 REQUEST_TOO_LARGE (declared length, or as it arrives).
- Not all there within ``body_timeout`` seconds of the request's start (a client that
  sends its body slowly, or stops): 408 REQUEST_TIMEOUT, and the connection is closed.
- A client that disconnects before its body is complete: one debug line, no traceback
  (nobody is left to answer).

Slow *headers* never reach the application: see orchestrator/servers.py.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("orchestrator.http")


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(send, 413, _too_large(self.max_bytes))
                return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        seen = 0
        complete = False
        started = False

        async def limited_receive() -> Message:
            nonlocal seen, complete
            if complete:  # only a disconnect is left to hear: no deadline for that
                return await receive()
            if loop.time() >= deadline:  # late, even if the rest is there by now
                raise _BodyTimeout
            try:
                # A timeout scope, not wait_for: wait_for (before Python 3.12) makes a
                # task of every receive, most of which answer at once.
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _BodyTimeout from None
            if message["type"] == "http.disconnect":
                raise _ClientGone
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
                complete = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reject(send, 413, _too_large(self.max_bytes))
        except _BodyTimeout:
            if not started:
                message = f"the request body did not arrive within {self.body_timeout:g} s"
                await self._reject(send, 408, _error("REQUEST_TIMEOUT", message))
        except _ClientGone:
            log.debug("client %s went away before its request body was complete", _peer(scope))

    @staticmethod
    async def _reject(send: Send, status: int, body: bytes) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if status == 408:  # the rest of the body may still trickle in: do not wait for it
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _too_large(limit: int) -> bytes:
    return _error("REQUEST_TOO_LARGE", f"request body is over {limit} bytes")


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown"


class _BodyTooLarge(Exception):
    pass


class _BodyTimeout(Exception):
    pass


class _ClientGone(Exception):
    pass
