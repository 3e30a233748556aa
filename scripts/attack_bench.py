"""Times the server's answers to hostile requests (issue 15), next to /healthz.

Starts ``orchestrator serve`` on a fresh SQLite database and sends:

- a 261 KB form of 87,000 ``k=`` fields to a Twilio callback URL with a made-up hash
  (refused 404 before the body is read), and to the real URL (413 TOO_MANY_FIELDS);
- the same while /healthz is polled: how long the slowest /healthz took meanwhile;
- a client that sends its headers one byte a second, and one that stops mid-body:
  how long until the server closes (or answers 408).

    .venv/bin/python scripts/attack_bench.py [--repeat 5]

Not a test: prints numbers (on a shared machine they vary; read them as magnitudes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from orchestrator.servers import free_port


def _serve(workdir: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ORCH_DATABASE_URL": f"sqlite:///{workdir}/attack.db",
        "ORCH_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    log = open(os.path.join(workdir, "serve.log"), "wb")
    args = ["serve", "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args], env=env, stdout=log, stderr=log
    )


async def _healthz_while(client: httpx.AsyncClient, base: str, stop: asyncio.Event) -> float:
    worst = 0.0
    while not stop.is_set():
        t = time.perf_counter()
        await client.get(f"{base}/healthz")
        worst = max(worst, time.perf_counter() - t)
        await asyncio.sleep(0.01)
    return worst


async def _post_timed(base: str, url: str, body: bytes) -> tuple[int, float, float]:
    """(status, seconds for the POST, slowest /healthz meanwhile)."""
    async with httpx.AsyncClient(timeout=60) as client:
        stop = asyncio.Event()
        probe = asyncio.create_task(_healthz_while(client, base, stop))
        await asyncio.sleep(0.05)
        t = time.perf_counter()
        r = await client.post(
            url, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        took = time.perf_counter() - t
        await asyncio.sleep(0.05)
        stop.set()
        return r.status_code, took, await probe


def _slow_headers(port: int, limit: float) -> float:
    """Seconds until the server closes a connection whose headers never finish."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(1.0)
        start = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        while time.monotonic() - start < limit:
            try:
                s.sendall(b"X")
                if s.recv(1024) == b"":
                    return time.monotonic() - start
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic() - start
        return float("inf")


def _slow_body(port: int, limit: float) -> tuple[float, bytes]:
    """Seconds until the server answers (or closes) a request whose body never comes."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(limit)
        start = time.monotonic()
        s.sendall(
            b"POST /api/v1/processes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        try:
            answer = s.recv(1024)
        except TimeoutError:
            return float("inf"), b""
        return time.monotonic() - start, answer.split(b"\r\n", 1)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fields", type=int, default=87_000)
    parser.add_argument("--socket-limit", type=float, default=60, help="seconds to wait")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="orch-attack-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _serve(workdir, port)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        view = httpx.get(f"{base}/api/v1/processes/getting-callback").json()
        real = next(n for n in view["nodes"] if "callback_urls" in n)["callback_urls"]["twilio"]
        forged = real[:-40] + "f" * 40
        body = b"&".join(b"k=" for _ in range(args.fields))
        print(f"form of {args.fields} fields, {len(body) / 1024:.0f} KB; {args.repeat} runs each")
        for name, url in (("unknown hash", forged), ("real hash", real)):
            runs = [asyncio.run(_post_timed(base, url, body)) for _ in range(args.repeat)]
            statuses = sorted({r[0] for r in runs})
            print(
                f"{name:<13} HTTP {statuses}: POST median "
                f"{statistics.median(r[1] for r in runs) * 1000:.1f} ms, max "
                f"{max(r[1] for r in runs) * 1000:.1f} ms; slowest /healthz meanwhile "
                f"{max(r[2] for r in runs) * 1000:.1f} ms"
            )
        print(f"slow headers  closed after {_slow_headers(port, args.socket_limit):.1f} s")
        took, line = _slow_body(port, args.socket_limit)
        print(f"stalled body  answered after {took:.1f} s: {line.decode(errors='replace')}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
