"""Slow and vanishing clients: request headers and bodies have deadlines (408, the
connection closed), and a client that leaves mid-body costs no traceback."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from servers import run_app

from orchestrator.commands.header_deadline import header_deadline_protocol
from orchestrator.config import Settings
from orchestrator.http.app import create_app

DEADLINE = 0.5
PATIENCE = 5.0  # far longer than the deadlines: waiting this long means no deadline


@pytest.fixture
def server(sqlite_url: str) -> Iterator[tuple[str, int]]:
    settings = Settings(database_url=sqlite_url, body_timeout=DEADLINE)
    app = create_app(settings, run_engine=False)
    with run_app(app, http=header_deadline_protocol(DEADLINE)) as url:
        yield url, int(url.rsplit(":", 1)[1])


def _answer(sock: socket.socket) -> bytes:
    """What the server sends until it closes (b"" if it closed without a word);
    TimeoutError if it keeps the connection open past PATIENCE."""
    sock.settimeout(PATIENCE)
    chunks = []
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_a_connection_that_never_sends_headers_is_closed(server: tuple[str, int]) -> None:
    url, port = server
    with socket.create_connection(("127.0.0.1", port)) as silent:
        started = time.monotonic()
        answer = _answer(silent)
    assert answer.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < PATIENCE
    assert httpx.get(f"{url}/healthz").status_code == 200  # others are served meanwhile


def test_headers_sent_a_byte_at_a_time_are_cut_off(server: tuple[str, int]) -> None:
    _url, port = server
    with socket.create_connection(("127.0.0.1", port)) as slow:
        started = time.monotonic()
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        closed = False
        while time.monotonic() - started < PATIENCE:
            try:
                slow.sendall(b"X")
            except OSError:
                closed = True
                break
            slow.settimeout(0.1)
            try:
                data = slow.recv(4096)
            except TimeoutError:
                continue
            assert data.startswith(b"HTTP/1.1 408") or data == b""
            closed = True
            break
    assert closed, "the server kept a trickling connection open"


def test_a_body_that_stops_arriving_gets_408(server: tuple[str, int]) -> None:
    _url, port = server
    with socket.create_connection(("127.0.0.1", port)) as stalled:
        stalled.sendall(
            b"POST /api/v1/processes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        answer = _answer(stalled)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"REQUEST_TIMEOUT" in answer


def test_a_client_leaving_mid_body_logs_no_traceback(
    server: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    url, port = server
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port)) as leaving:
            leaving.sendall(
                b"POST /api/v1/processes HTTP/1.1\r\nHost: x\r\n"
                b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"a":'
            )
            time.sleep(0.05)
    time.sleep(0.3)  # let the server notice
    assert httpx.get(f"{url}/healthz").status_code == 200
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    assert not noisy, [r.getMessage() for r in noisy]
    quiet = [r for r in caplog.records if "went away" in r.getMessage()]
    assert quiet and all(r.levelno == logging.DEBUG for r in quiet)
