"""Exactly-once rests on this: a create that failed before it left may be sent again; one
that may have reached Twilio (no answer, an answer cut short or unreadable) must not be,
and is flagged ``outcome_unknown`` for the caller to look it up. Each failure is made for
real on loopback sockets (``fake_http``), so these tests check what aiohttp actually
raises in each case and how the client maps it, not what a mock was told to raise."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fake_http import Fail, FakeServer, FullListener, Reply

from orchestrator.twilio import transport
from orchestrator.twilio.client import TwilioClient
from orchestrator.twilio.credentials import Credentials
from orchestrator.twilio.errors import TwilioError
from orchestrator.twilio.retry import RetryPolicy

SID = "AC" + "a" * 32
TOKEN = "s3cr3t-auth-token-value"
CREDS = Credentials(account_sid=SID, username=SID, password=TOKEN)
MESSAGE_SID = "SM" + "b" * 32
CREATED = Reply.json(201, {"sid": MESSAGE_SID, "status": "queued"})
FETCHED = Reply.json(200, {"sid": MESSAGE_SID, "status": "delivered"})
Op = Callable[[TwilioClient], Awaitable[dict[str, Any]]]


def send_sms(client: TwilioClient) -> Awaitable[dict[str, Any]]:
    return client.create_message(CREDS, {"To": "+15005550009", "Body": "hi"})


def fetch(client: TwilioClient) -> Awaitable[dict[str, Any]]:
    return client.fetch_message(CREDS, MESSAGE_SID)


class Run:
    """One client against ``url``; records its waits between attempts and what it told
    ``observe``. ``on_sleep`` runs at each wait (e.g. to bring a server up)."""

    def __init__(self, attempts: int = 4, on_sleep: Callable[[], Awaitable[None]] | None = None):
        self.sleeps: list[float] = []
        self.observed: list[str] = []
        self.attempts = attempts
        self.on_sleep = on_sleep

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep is not None:
            await self.on_sleep()

    async def __call__(self, url: str, op: Op, timeout: float = 5.0) -> dict[str, Any]:
        client = TwilioClient(
            url,
            timeout=timeout,
            connect_timeout=0.3,
            retry=RetryPolicy(max_attempts=self.attempts, base_delay=0.01, jitter=0.0),
            sleep=self.sleep,
            observe=lambda action, outcome, code, secs: self.observed.append(outcome),
        )
        async with client:
            return await op(client)


# -- not sent: retried, also for a create -----------------------------------------------


def test_refused_create_is_retried_and_never_flagged_unknown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = Run()

    async def main() -> None:
        async with FakeServer(CREATED, listening=False) as server:
            await run(server.url, send_sms)

    with caplog.at_level(logging.DEBUG, logger="orchestrator.twilio"):
        with pytest.raises(TwilioError) as info:
            asyncio.run(main())
    err = info.value
    assert (err.error, err.code) == ("TWILIO_CONNECTION_ERROR", "TWILIO_CONNECTION_ERROR")
    assert err.retryable is True and err.outcome_unknown is False
    assert "ClientConnectorError" in err.message and "4 attempt" in err.message
    assert run.sleeps == [0.01, 0.02, 0.04]
    assert run.observed == ["no_answer"] * 4
    for text in (err.message, str(err), repr(err), caplog.text):
        assert TOKEN not in text
        assert base64.b64encode(f"{SID}:{TOKEN}".encode()).decode() not in text
    assert "retry" in caplog.text


def test_create_refused_then_accepted_is_sent_once() -> None:
    async def main() -> tuple[dict[str, Any], Run, FakeServer]:
        async with FakeServer(CREATED, listening=False) as server:
            run = Run(on_sleep=server.listen)
            return await run(server.url, send_sms), run, server

    result, run, server = asyncio.run(main())
    assert result["sid"] == MESSAGE_SID
    assert len(run.sleeps) == 1 and len(server.requests) == 1


def test_connect_timeout_on_create_is_retried_as_not_sent() -> None:
    run = Run(attempts=2)
    with FullListener() as host_down, pytest.raises(TwilioError) as info:
        asyncio.run(run(host_down.url, send_sms))
    assert info.value.error == "TWILIO_CONNECTION_ERROR"
    assert "ConnectionTimeoutError" in info.value.message
    assert info.value.outcome_unknown is False and info.value.retryable is True
    assert len(run.sleeps) == 1


# -- maybe sent: a create is never sent again -------------------------------------------


@pytest.mark.parametrize("failure", list(Fail))
def test_create_without_usable_answer_is_outcome_unknown_and_not_retried(failure: Fail) -> None:
    run = Run()

    async def main() -> None:
        async with FakeServer(failure, CREATED) as server:
            try:
                await run(server.url, send_sms, timeout=0.3 if failure is Fail.HANG else 5.0)
            finally:
                assert len(server.requests) == 1  # the create reached the server once

    with pytest.raises(TwilioError) as info:
        asyncio.run(main())
    err = info.value
    assert (err.error, err.code) == ("TWILIO_OUTCOME_UNKNOWN", "TWILIO_OUTCOME_UNKNOWN")
    assert err.outcome_unknown is True and err.retryable is False
    assert run.sleeps == [] and run.observed == ["no_answer"]
    assert TOKEN not in str(err)


# -- reads are idempotent: retried whatever the failure ---------------------------------


@pytest.mark.parametrize("failure", list(Fail))
def test_fetch_without_usable_answer_is_retried(failure: Fail) -> None:
    async def main() -> dict[str, Any]:
        async with FakeServer(failure, FETCHED) as server:
            return await Run()(server.url, fetch, timeout=0.3 if failure is Fail.HANG else 5.0)

    assert asyncio.run(main())["status"] == "delivered"


def test_fetch_read_timeout_exhausted_is_connection_error() -> None:
    run = Run(attempts=2)

    async def main() -> None:
        async with FakeServer(Fail.HANG) as server:
            await run(server.url, fetch, timeout=0.2)

    with pytest.raises(TwilioError) as info:
        asyncio.run(main())
    assert info.value.error == "TWILIO_CONNECTION_ERROR"
    assert info.value.outcome_unknown is False
    assert len(run.sleeps) == 1


# -- the mapping itself, for failures loopback cannot produce ---------------------------

KEY = ConnectionKey("api.twilio.com", 443, True, True, None, None, None)
REFUSED = ConnectionRefusedError(111, "Connection refused")


@pytest.mark.parametrize(
    ("exc", "sent_maybe"),
    [
        (aiohttp.ClientConnectorError(KEY, REFUSED), False),
        (aiohttp.ClientConnectorDNSError(KEY, OSError(-2, "Name or service not known")), False),
        (aiohttp.ClientProxyConnectionError(KEY, REFUSED), False),
        (aiohttp.ClientConnectorSSLError(KEY, ssl.SSLError(1, "handshake")), False),
        (aiohttp.ClientConnectorCertificateError(KEY, ssl.CertificateError("bad")), False),
        (aiohttp.ConnectionTimeoutError("Connection timeout to host"), False),
        (aiohttp.ClientHttpProxyError(None, (), status=403, message="CONNECT refused"), False),
        # Siblings and parents of the above: raised once the request may have left.
        (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), True),
        (aiohttp.ServerTimeoutError("timeout"), True),
        (aiohttp.ServerDisconnectedError(), True),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), True),
        (aiohttp.ClientConnectionResetError("Cannot write to closing transport"), True),
        (aiohttp.ClientConnectionError("Failed to send bytes"), True),
        (aiohttp.ClientPayloadError("Response payload is not completed"), True),
        (aiohttp.ClientResponseError(None, (), status=400, message="Bad status line"), True),
        (TimeoutError(), True),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_only_failures_before_sending_count_as_not_sent(
    exc: BaseException, sent_maybe: bool
) -> None:
    assert isinstance(exc, transport.NO_ANSWER)
    assert transport.not_sent(exc) is not sent_maybe


# -- TLS: verified, against certifi's CAs or SSL_CERT_FILE ------------------------------


def _self_signed(tmp: Path) -> tuple[ssl.SSLContext, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake twilio")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = tmp / "cert.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = tmp / "key.pem"
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pem, key_pem)
    return server, pem


def test_tls_certificate_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server_tls, pem = _self_signed(tmp_path)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    run = Run(attempts=2)

    async def main() -> dict[str, Any]:
        async with FakeServer(CREATED, tls=server_tls) as server:
            return await run(server.url, send_sms)

    # An unknown issuer: refused during the handshake, before the request is written.
    with pytest.raises(TwilioError) as info:
        asyncio.run(main())
    assert info.value.error == "TWILIO_CONNECTION_ERROR"
    assert "Certificate" in info.value.message and info.value.outcome_unknown is False
    # Trusted through SSL_CERT_FILE, as httpx honoured it.
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    assert asyncio.run(main())["sid"] == MESSAGE_SID
    # Otherwise the CAs are certifi's (not the system's).
    monkeypatch.delenv("SSL_CERT_FILE")
    monkeypatch.setattr(transport.certifi, "where", lambda: str(pem))
    assert asyncio.run(main())["sid"] == MESSAGE_SID


def test_tls_context_is_verifying_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    ctx = transport.tls_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname is True
    assert ctx.cert_store_stats()["x509_ca"] > 50
