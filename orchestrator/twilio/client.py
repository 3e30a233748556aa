"""Async client for the parts of Twilio's 2010 REST API the orchestrator uses.

One shared aiohttp session (``transport.py``: pooled connections) serves every account;
credentials travel per request as HTTP Basic auth and never appear in errors, logs or
reprs.

Failure handling (see ``retry.py``): 429/20429, 503 and failures to connect are retried
with backoff through the injected ``sleep``, honouring ``Retry-After``. When a *create*
(POST) was sent but no usable answer came back (read timeout, dropped connection,
protocol error, 5xx other than 503, unreadable 2xx body), the message or call may exist:
the error is flagged ``outcome_unknown`` and never retried here: only a failure that
certainly came before the request left (``transport.not_sent``) is retried on a create.
Reads (GET) are idempotent and are retried on those failures too.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from .credentials import API_VERSION, Credentials
from .errors import (
    TWILIO_CONNECTION_ERROR,
    TWILIO_OUTCOME_UNKNOWN,
    UNKNOWN_ERROR,
    TwilioError,
    error_name,
)
from .retry import RetryPolicy, is_retryable
from .transport import NO_ANSWER, Answer, Transport, not_sent

log = logging.getLogger(__name__)

USER_AGENT = "orchestrator-twilio/0.1"
FormParams = Mapping[str, str | Sequence[str]]
# Told before each wait for a retry: (failed attempt number, seconds to wait, reason).
RetryHook = Callable[[int, float, str], Awaitable[None]]

FORM_TYPE = "application/x-www-form-urlencoded"


def _encode_form(params: FormParams) -> bytes:
    """``application/x-www-form-urlencoded``; a sequence becomes repeated keys."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if isinstance(value, str):
            pairs.append((name, value))
        else:
            pairs.extend((name, item) for item in value)
    return urlencode(pairs).encode("ascii")


def _as_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def _authorization(creds: Credentials) -> str:
    # Built per request (well under a microsecond), so no cache keeps old secrets around.
    pair = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _retry_after(response: Answer) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is ignored)."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        seconds = float(raw.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _scrub(text: str, creds: Credentials) -> str:
    return text.replace(creds.password, "***")


def _api_error(response: Answer, creds: Credentials, *, idempotent: bool) -> TwilioError:
    """Twilio's ``{"code","message","more_info","status"}`` (any part may be missing)."""
    status = response.status
    try:
        body: object = response.json()
    except ValueError:
        body = None
    code: int | None = None
    message: str | None = None
    more_info: str | None = None
    if isinstance(body, dict):
        code = _as_int(body.get("code"))
        raw_message = body.get("message") or body.get("detail") or body.get("title")
        message = str(raw_message) if raw_message else None
        raw_more = body.get("more_info")
        more_info = str(raw_more) if raw_more else None
    if not message:
        message = f"HTTP {status} {response.reason}".strip()
    return TwilioError(
        error_name(status, code),
        _scrub(message, creds),
        code=code,
        url_more_info=more_info,
        http_status=status,
        retryable=is_retryable(status, code, connect_failed=False, idempotent=idempotent),
        # A create that failed server-side may still have been carried out (503: not
        # processed, retried; 501: never implemented).
        outcome_unknown=not idempotent and status >= 500 and status not in (501, 503),
    )


class TwilioClient:
    """Messages create/fetch/list, Calls create/fetch, OutgoingCallerIds list."""

    def __init__(
        self,
        base_url: str = "https://api.twilio.com",
        *,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_connections: int = 16,
        observe: Callable[[str, str, str, float], None] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be an http(s) URL")
        self._retry = retry or RetryPolicy()
        # Told of every HTTP request: (action, outcome, Twilio error code, seconds).
        self._observe = observe
        self._sleep = sleep
        self._base_url = base_url.rstrip("/")
        # Callers queue here, untimed, rather than in the pool, whose wait counts against
        # the connect timeout: a backlog of sends must not fail them (or use up retries).
        self._slots = asyncio.Semaphore(max_connections)
        self._http = Transport(
            timeout=timeout, connect_timeout=connect_timeout, max_connections=max_connections
        )

    async def __aenter__(self) -> TwilioClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- public API ---------------------------------------------------------------------

    async def create_message(
        self, creds: Credentials, params: FormParams, *, on_retry: RetryHook | None = None
    ) -> dict[str, Any]:
        """``POST …/Messages.json``; Twilio answers 201 with the Message."""
        path = self._path(creds, "Messages.json")
        return await self._send(
            "POST", path, creds, form=params, on_retry=on_retry, action="create_message"
        )

    async def fetch_message(self, creds: Credentials, sid: str) -> dict[str, Any]:
        if not sid:
            raise ValueError("sid must not be empty")
        path = self._path(creds, f"Messages/{quote(sid, safe='')}.json")
        return await self._send("GET", path, creds, action="fetch_message")

    async def list_messages(
        self,
        creds: Credentials,
        *,
        to: str | None = None,
        from_: str | None = None,
        date_sent: str | None = None,
        date_sent_after: str | None = None,
        page_size: int = 50,
        max_pages: int = 10,
    ) -> list[dict[str, Any]]:
        """Messages filtered by ``To``/``From``/``DateSent`` or ``DateSent>`` (on or after,
        twilio-python's ``date_sent_after``), newest first. Dates are ISO 8601 date-times
        (``2026-11-24T00:00:00Z``), the format Twilio's OpenAPI file gives them."""
        query = {"To": to, "From": from_, "DateSent": date_sent, "DateSent>": date_sent_after}
        return await self._list(
            creds, "Messages.json", "messages", query, page_size=page_size, max_pages=max_pages
        )

    async def create_call(
        self, creds: Credentials, params: FormParams, *, on_retry: RetryHook | None = None
    ) -> dict[str, Any]:
        """``POST …/Calls.json``; Twilio answers 201 with the Call."""
        path = self._path(creds, "Calls.json")
        return await self._send(
            "POST", path, creds, form=params, on_retry=on_retry, action="create_call"
        )

    async def fetch_call(self, creds: Credentials, sid: str) -> dict[str, Any]:
        if not sid:
            raise ValueError("sid must not be empty")
        return await self._send(
            "GET",
            self._path(creds, f"Calls/{quote(sid, safe='')}.json"),
            creds,
            action="fetch_call",
        )

    async def list_outgoing_caller_ids(
        self, creds: Credentials, *, page_size: int = 50, max_pages: int = 100
    ) -> list[dict[str, Any]]:
        """Every verified caller ID, following ``next_page_uri`` up to ``max_pages``."""
        return await self._list(
            creds,
            "OutgoingCallerIds.json",
            "outgoing_caller_ids",
            {},
            page_size=page_size,
            max_pages=max_pages,
        )

    # -- internals ----------------------------------------------------------------------

    @staticmethod
    def _path(creds: Credentials, resource: str) -> str:
        return f"/{API_VERSION}/Accounts/{quote(creds.account_sid, safe='')}/{resource}"

    async def _list(
        self,
        creds: Credentials,
        resource: str,
        key: str,
        query: Mapping[str, str | None],
        *,
        page_size: int,
        max_pages: int,
    ) -> list[dict[str, Any]]:
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        if max_pages < 1:
            raise ValueError("max_pages must be >= 1")
        pairs = [(k, v) for k, v in query.items() if v is not None]
        pairs.append(("PageSize", str(page_size)))
        url = f"{self._path(creds, resource)}?{urlencode(pairs)}"
        records: list[dict[str, Any]] = []
        for _ in range(max_pages):
            page = await self._send("GET", url, creds, action=f"list_{key}")
            items = page.get(key)
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise TwilioError(UNKNOWN_ERROR, f"Twilio page has no '{key}' list")
            records.extend(items)
            next_uri = page.get("next_page_uri")
            if not next_uri:
                return records
            url = self._next_page(next_uri)
        log.warning("Twilio %s: stopped after max_pages=%d, more pages remain", key, max_pages)
        return records

    @staticmethod
    def _next_page(uri: object) -> str:
        # Relative to the base URL; an absolute or protocol-relative URI could send the
        # credentials to another host, so it is refused.
        if not isinstance(uri, str) or not uri.startswith("/") or uri.startswith("//"):
            raise TwilioError(UNKNOWN_ERROR, "Twilio next_page_uri is not a relative path")
        return uri

    async def _send(
        self,
        method: str,
        url: str,
        creds: Credentials,
        *,
        form: FormParams | None = None,
        on_retry: RetryHook | None = None,
        action: str = "request",
    ) -> dict[str, Any]:
        idempotent = method == "GET"
        content = None if form is None else _encode_form(form)
        headers = {
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "Authorization": _authorization(creds),
        }
        if form is not None:
            headers["Content-Type"] = FORM_TYPE
        path = url.split("?", 1)[0]
        # ``url`` is a path (``_path``, or a next_page_uri checked by ``_next_page``).
        url = (creds.base_url or self._base_url) + url
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                async with self._slots:
                    response = await self._http.request(method, url, headers, content)
            except NO_ANSWER as exc:
                if self._observe is not None:
                    self._observe(action, "no_answer", "", time.perf_counter() - started)
                reason = _scrub(f"{type(exc).__name__}: {exc}".rstrip(": "), creds)
                if not idempotent and not not_sent(exc):
                    raise TwilioError(
                        TWILIO_OUTCOME_UNKNOWN,
                        f"No answer from Twilio to {method} {path} ({reason}); it may have "
                        "been carried out, reconcile before sending again",
                        outcome_unknown=True,
                    ) from exc
                delay = self._retry.next_delay(attempt)
                if delay is None:
                    raise TwilioError(
                        TWILIO_CONNECTION_ERROR,
                        f"Unable to reach Twilio for {method} {path} after {attempt} "
                        f"attempt(s) ({reason})",
                        retryable=True,
                    ) from exc
                log.warning(
                    "Twilio %s %s: %s; retry %d in %.2fs", method, path, reason, attempt, delay
                )
                if on_retry is not None:
                    await on_retry(attempt, delay, reason)
                await self._sleep(delay)
                continue

            if response.is_success:
                if self._observe is not None:
                    self._observe(action, "ok", "", time.perf_counter() - started)
                return self._decode(response, method, path, idempotent=idempotent)
            error = _api_error(response, creds, idempotent=idempotent)
            if self._observe is not None:
                outcome = "retryable" if error.retryable else "error"
                self._observe(action, outcome, str(error.code), time.perf_counter() - started)
            if error.retryable:
                delay = self._retry.next_delay(attempt, retry_after=_retry_after(response))
                if delay is not None:
                    log.warning(
                        "Twilio %s %s: HTTP %d code %s; retry %d in %.2fs",
                        method,
                        path,
                        response.status,
                        error.code,
                        attempt,
                        delay,
                    )
                    if on_retry is not None:
                        reason = f"HTTP {response.status} {error.error} ({error.code})"
                        await on_retry(attempt, delay, reason)
                    await self._sleep(delay)
                    continue
            log.info("Twilio %s %s: %s (code %s)", method, path, error.error, error.code)
            raise error

    @staticmethod
    def _decode(response: Answer, method: str, path: str, *, idempotent: bool) -> dict[str, Any]:
        try:
            body: object = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            return body
        message = f"Unreadable answer from Twilio to {method} {path} (HTTP {response.status})"
        if idempotent:
            raise TwilioError(UNKNOWN_ERROR, message, http_status=response.status)
        raise TwilioError(
            TWILIO_OUTCOME_UNKNOWN,
            message + "; it may have been carried out",
            http_status=response.status,
            outcome_unknown=True,
        )
