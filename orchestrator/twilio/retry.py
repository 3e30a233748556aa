"""When to retry a Twilio request and how long to wait first (pure; no I/O).

Retried: HTTP 429 / Twilio 20429 (API concurrency; "never processed … always safe to
retry"), HTTP 503, and failures to connect (the request never left). Not retried: 21611
(the sender's queue is full; retrying soon only piles up), any other 4xx, and 500/502/504
on a create, because Twilio may have created the message before failing. Reads (GET) are
idempotent, so they may also be retried on 500/502/504 (``idempotent=True``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_RNG = random.Random()

RETRYABLE_STATUSES = frozenset({429, 503})
IDEMPOTENT_RETRYABLE_STATUSES = frozenset({500, 502, 503, 504, 429})
RETRYABLE_CODES = frozenset({20429})
NEVER_RETRY_CODES = frozenset({21611})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``base_delay * 2**(attempt-1)``, capped, minus random jitter.

    ``max_attempts`` counts every request, the first one included. ``jitter`` is the
    fraction (0..1) of the delay that may be randomly taken off, so concurrent clients
    spread out without ever waiting longer than ``max_delay``.
    """

    max_attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 10.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def next_delay(
        self,
        attempt: int,
        *,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait after failed attempt number ``attempt`` (1-based); None = give up.

        A ``Retry-After`` (seconds) from the server is used as is, capped at ``max_delay``.
        """
        if attempt < 1:
            raise ValueError("attempt is 1-based")
        if attempt >= self.max_attempts:
            return None
        if retry_after is not None and retry_after >= 0:
            return min(float(retry_after), self.max_delay)
        backoff = min(self.base_delay * 2.0 ** min(attempt - 1, 60), self.max_delay)
        return backoff * (1.0 - self.jitter * (rng or _RNG).random())


def is_retryable(
    http_status: int | None,
    twilio_code: int | None,
    *,
    connect_failed: bool,
    idempotent: bool = False,
) -> bool:
    """True when sending the same request again is safe and may succeed."""
    if connect_failed:
        return True
    if twilio_code in NEVER_RETRY_CODES:
        return False
    if twilio_code in RETRYABLE_CODES:
        return True
    statuses = IDEMPOTENT_RETRYABLE_STATUSES if idempotent else RETRYABLE_STATUSES
    return http_status in statuses
