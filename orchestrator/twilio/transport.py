"""HTTP for the Twilio client: one pooled aiohttp session, and which failures mean the
request certainly never left (``not_sent``).

aiohttp rather than httpx: the engine's main thread sends every Twilio create, and
httpx's per-request machinery (request/response models, auth flow, httpcore's pool and
anyio streams) cost 1–2 ms of CPU per request, a third of the server's CPU per round
trip; aiohttp (C parser and writer, protocol-based transport) costs a tenth of that.

What stays as httpx gave it: TLS verified against certifi's CAs (or ``SSL_CERT_FILE`` /
``SSL_CERT_DIR``), ``HTTP(S)_PROXY`` / ``NO_PROXY`` from the environment, no cookies, no
redirects, gzip/deflate answers decoded, and an idle connection dropped after 2 s.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus

import aiohttp
import certifi
from aiohttp.helpers import get_env_proxy_for_url
from multidict import CIMultiDictProxy
from yarl import URL

# Shorter than common servers' idle timeout (uvicorn: 5 s), so a request is never
# written to a connection the server is closing: that would look like an unanswered send.
KEEPALIVE_SECONDS = 2.0

# Raised only while a connection is being obtained (``TCPConnector.connect``: the pool,
# DNS, TCP, TLS, a proxy's CONNECT), before any byte of the request is written: sending
# again is always safe. Everything else aiohttp raises (``ServerDisconnectedError``,
# ``SocketTimeoutError`` -- a sibling of ``ConnectionTimeoutError`` under
# ``ServerTimeoutError`` --, ``ClientOSError``, ``ClientPayloadError``,
# ``ClientResponseError``...) may come after the request was written: outcome unknown.
# ``ClientConnectorError`` covers its DNS, proxy-connection, SSL and certificate kinds.
NOT_SENT: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.ClientHttpProxyError,
)
# What a request may fail with, short of cancellation (aiohttp's timeouts are
# ``ServerTimeoutError``, a ``ClientError``; a bare TimeoutError is caught as well).
NO_ANSWER: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError)


def not_sent(exc: BaseException) -> bool:
    """True when ``exc`` (one of ``NO_ANSWER``) certainly came before the request left."""
    return isinstance(exc, NOT_SENT)


def tls_context() -> ssl.SSLContext:
    """Verified TLS as httpx set it up: ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when set,
    else certifi's CA bundle (not the system's, which may be missing or stale)."""
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    return ssl.create_default_context(cafile=certifi.where())


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete HTTP answer, its body read."""

    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> object:
        """The body as JSON (ValueError when it is not)."""
        return json.loads(self.body)


def _reason(status: int, given: str | None) -> str:
    if given:
        return given
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class Transport:
    """One aiohttp session for every account and base URL, made on first use (so it
    belongs to the event loop that uses it)."""

    def __init__(self, *, timeout: float, connect_timeout: float, max_connections: int) -> None:
        # Per read (``sock_read``) as httpx's read timeout; the connect timeout per TCP/TLS
        # connect; ``connect`` also bounds the wait for a pooled connection and DNS.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=connect_timeout, sock_read=timeout
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        # Read from the environment once per origin, not per request (aiohttp's
        # ``trust_env`` would look it up in a thread each time, and read ~/.netrc too).
        self._proxies: dict[str, tuple[URL | None, aiohttp.BasicAuth | None]] = {}

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the Twilio client has been closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections,
                    keepalive_timeout=KEEPALIVE_SECONDS,
                    ssl=tls_context(),
                ),
                timeout=self._timeout,
                # One session for all accounts: refuse cookies so nothing leaks between them.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    def _proxy(self, url: URL) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        origin = f"{url.scheme}://{url.raw_authority}"
        if (known := self._proxies.get(origin)) is None:
            try:
                known = get_env_proxy_for_url(url)
            except LookupError:
                known = (None, None)
            self._proxies[origin] = known
        return known

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> Answer:
        """Send one request and read its whole answer; raises one of ``NO_ANSWER``."""
        # ``url`` is already percent-encoded (quoted path, urlencoded query, or Twilio's own
        # next_page_uri): taken as is, never re-quoted.
        target = URL(url, encoded=True)
        proxy, proxy_auth = self._proxy(target)
        async with self._open().request(
            method,
            target,
            headers=headers,
            data=body,
            allow_redirects=False,
            proxy=proxy,
            proxy_auth=proxy_auth,
        ) as response:
            content = await response.read()
            return Answer(
                response.status,
                _reason(response.status, response.reason),
                response.headers,
                content,
            )

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
