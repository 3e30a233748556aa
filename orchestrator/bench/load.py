"""The bench's load client: "Sending SMS" submissions over the REST API, as fast as the
server takes them (or at a fixed rate), with at most ``concurrency`` in flight.

aiohttp, not httpx: this process shares the cores with the server it measures, and
httpx's pool bookkeeping cost more CPU per request than the rest of the client."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

# Idle connections are dropped before the server's keep-alive timeout (5 s) closes them.
KEEPALIVE_TIMEOUT = 2.0


def _session(connections: int, timeout: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=KEEPALIVE_TIMEOUT),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def wait_http(url: str, deadline: float) -> None:
    """Until ``url`` answers below 500 (the server is up), or RuntimeError at ``deadline``."""
    async with _session(1, 5.0) as client:
        while time.time() < deadline:
            try:
                async with client.get(url) as response:
                    if response.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def get_json(url: str) -> Any:
    async with _session(1, 30.0) as client, client.get(url) as response:
        return await response.json()


def recipient(i: int, waiting: bool) -> str:
    """The i-th submission's number. The simulator's magic endings are avoided (they
    fail or never deliver), unless ``waiting`` asks for the one that never calls back."""
    to = f"+1555{i % 10_000_000:07d}"
    if waiting:
        return to[:-4] + "0000"  # the simulator never calls back: the task waits
    if to.endswith(("0000", "3003", "3005", "3008")):
        return to[:-1] + "1"
    return to


async def submit(
    api: str,
    n: int,
    concurrency: int,
    rate: float,
    waiting: bool,
    sent: list[int],
    refused: dict[str, int] | None = None,
) -> int:
    """Submits ``n`` tasks; the number refused. ``sent[0]`` counts the answered
    submissions as they come (for progress); ``refused`` counts why submissions were
    refused (the last attempt's HTTP status or exception)."""
    failures = 0
    why = refused if refused is not None else {}
    run = time.strftime("%Y%m%dT%H%M%S")
    url = f"{api}/api/v1/processes/sending-sms/tasks"
    headers = {"Content-Type": "application/json"}
    # The pool also bounds the requests in flight to ``concurrency``.
    async with _session(concurrency, 60.0) as client:

        async def one(i: int) -> None:
            nonlocal failures
            body = {
                "ref": f"bench-{run}-{i}",  # a new task even in a database used before
                "data": {
                    "Number_to": recipient(i, waiting),
                    "Number_from": "+15005550006",
                    "Body": f"bench {i}",
                },
            }
            content = json.dumps(body, separators=(",", ":"))
            # A dropped connection is retried: the same ref and data is an idempotent
            # create, so the POST is repeatable.
            reason = ""
            for _attempt in range(3):
                try:
                    async with client.post(url, data=content, headers=headers) as r:
                        await r.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    reason = type(exc).__name__
                    continue
                if r.status in (200, 201):
                    sent[0] += 1
                    return
                reason = f"HTTP {r.status}"
                break
            failures += 1
            why[reason] = why.get(reason, 0) + 1

        start = time.time()
        jobs = []
        for i in range(n):
            if rate > 0:
                delay = start + i / rate - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            jobs.append(asyncio.create_task(one(i)))
        await asyncio.gather(*jobs)
    return failures
