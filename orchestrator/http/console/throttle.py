"""Console login throttling: a client address that failed too often waits.

Kept in the process's memory (a few bytes per address, at most MAX_CLIENTS addresses):
with several API processes each counts on its own, so the limit is per process. Secrets
are long random strings, so guessing is hopeless anyway; this stops the hammering and
makes it visible (a 429 page)."""

from __future__ import annotations

import time
from collections import deque

MAX_FAILURES = 5  # wrong secrets per address within WINDOW
WINDOW = 60.0
MAX_CLIENTS = 10_000


class LoginThrottle:
    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def wait_for(self, client: str, now: float | None = None) -> float:
        """Seconds this client must wait before its next attempt (0: it may try now)."""
        now = time.monotonic() if now is None else now
        times = self._recent(client, now)
        if len(times) < self.max_failures:
            return 0.0
        return times[0] + self.window - now

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if client not in self._failures and len(self._failures) >= MAX_CLIENTS:
            self._failures.clear()  # bounded: an address flood forgets everyone's count
        times = self._recent(client, now)
        times.append(now)
        self._failures[client] = times

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
