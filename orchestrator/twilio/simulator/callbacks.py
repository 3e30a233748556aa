"""The Twilio simulator's status callbacks: each record's lifecycle on a clock, and the
signed, retried form POSTs that report it (see ``simulator.py`` for the behaviour).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Coroutine
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp

from ..signature import SIGNATURE_HEADER, compute_signature
from .config import SimulatorConfig
from .records import Record, Step

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
USER_AGENT = "TwilioProxy/1.1"
KEEPALIVE_TIMEOUT = 2.0  # seconds an idle connection is kept for the next callback


# Connections open at once to receivers (Twilio opens many; the bench's server takes
# them all on one event loop).
CONNECTIONS = 100


def retry_count(fragment: str) -> int:
    """Twilio's ``#rc=N`` connection override (0–5); default one retry."""
    raw = parse_qs(fragment).get("rc", ["1"])[0]
    return min(max(int(raw), 0), 5) if raw.isdigit() else 1


class CallbackSender:
    """Pending lifecycle tasks, one HTTP client, and the log of delivery attempts.

    ``stats`` is the simulator's counters dict, shared: ``callbacks_sent`` and
    ``callbacks_failed`` are counted here.
    """

    def __init__(self, config: SimulatorConfig, stats: dict[str, int]) -> None:
        self.config = config
        self.stats = stats
        self.log: deque[dict[str, Any]] = deque(maxlen=1000)
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created lazily so it belongs to the server's event loop; closed at shutdown.
        # aiohttp, not httpx: the simulator shares the cores with the server under test
        # (the bench), and httpx's pool bookkeeping was a third of the simulator's CPU.
        if self._http is None:
            self._http = aiohttp.ClientSession(
                # Twilio's rt/ct, per request: not counting the wait for a pooled
                # connection (under a backlog that wait alone passed 15 s, and callbacks
                # the server would have taken were counted as failed).
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=15.0),
                headers={"User-Agent": USER_AGENT},
                connector=aiohttp.TCPConnector(
                    limit=CONNECTIONS,
                    # Idle connections are dropped before a receiver's own keep-alive
                    # timeout (uvicorn's: 5 s) can close one just as a callback is sent.
                    keepalive_timeout=KEEPALIVE_TIMEOUT,
                ),
            )
        return self._http

    async def _post(self, url: str, body: str, headers: dict[str, str]) -> int:
        async with self._client().post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)  # the loop keeps only a weak reference to tasks
        task.add_done_callback(self._tasks.discard)

    async def cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.cancel_tasks()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _run(self, record: Record, steps: list[Step]) -> None:
        for step in steps:
            await asyncio.sleep(self.config.callback_delay)
            await self._emit(record, step)

    async def _emit(self, record: Record, step: Step) -> None:
        record.advance(step)
        url = record.status_callback
        if not step.post or not url or self.config.lose_callbacks:
            return
        params = record.callback_params(step)
        token = uuid.uuid4().hex  # one per delivery: its retries and duplicate reuse it
        for _ in range(2 if self.config.duplicate_callbacks else 1):
            await self._deliver(url, params, token)

    async def _deliver(self, url: str, params: dict[str, str], token: str) -> None:
        parts = urlsplit(url)
        target = urlunsplit(parts._replace(fragment=""))  # fragments are never signed
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            SIGNATURE_HEADER: compute_signature(target, params, self.config.auth_token),
            IDEMPOTENCY_HEADER: token,
            "X-Home-Region": "us1",
        }
        body = urlencode(params)
        for attempt in range(retry_count(parts.fragment) + 1):
            if attempt:
                await asyncio.sleep(self.config.callback_retry_delay)
            result: int | str
            try:
                result = await self._post(target, body, headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                result = type(exc).__name__
            self.log.append(
                {
                    "url": target,
                    "params": params,
                    "token": token,
                    "attempt": attempt,
                    "result": result,
                }
            )
            if isinstance(result, int) and 200 <= result < 300:
                self.stats["callbacks_sent"] += 1
                return
        self.stats["callbacks_failed"] += 1

    async def start(self, record: Record, steps: list[Step]) -> dict[str, Any]:
        """Schedule the record's lifecycle; the create's answer (the initial status)."""
        cfg = self.config
        answer = record.to_json()  # the initial status, even if a callback beats it
        if cfg.reorder_callbacks and len(steps) > 1:
            steps = [steps[-1], *steps[:-1]]
        if cfg.early_callbacks:
            while steps:  # up to and including the first step that posts a callback
                step = steps.pop(0)
                await self._emit(record, step)
                if step.post:
                    break
        self._spawn(self._run(record, steps))
        if cfg.response_delay > 0:
            await asyncio.sleep(cfg.response_delay)  # the record exists meanwhile
        return answer
