from __future__ import annotations

import random

import pytest

from orchestrator.twilio.retry import RetryPolicy, is_retryable


def test_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.base_delay, policy.max_delay, policy.jitter) == (
        4,
        0.2,
        10.0,
        0.5,
    )


def test_exponential_without_jitter_and_exhaustion() -> None:
    policy = RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=100.0, jitter=0.0)
    assert [policy.next_delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert policy.next_delay(4) is None
    assert policy.next_delay(5) is None


def test_capped_by_max_delay() -> None:
    policy = RetryPolicy(max_attempts=50, base_delay=1.0, max_delay=3.0, jitter=0.0)
    assert policy.next_delay(10) == 3.0
    assert policy.next_delay(49) == 3.0


def test_huge_attempt_does_not_overflow() -> None:
    policy = RetryPolicy(max_attempts=10_000, base_delay=1.0, max_delay=3.0, jitter=0.0)
    assert policy.next_delay(5_000) == 3.0


def test_jitter_stays_within_bounds_and_is_seedable() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=1.0, max_delay=100.0, jitter=0.5)
    rng = random.Random(7)
    delays = [policy.next_delay(3, rng=rng) for _ in range(200)]
    assert all(d is not None and 2.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 1
    assert policy.next_delay(3, rng=random.Random(1)) == policy.next_delay(3, rng=random.Random(1))


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=5.0, jitter=0.5)
    assert policy.next_delay(1, retry_after=2.0) == 2.0
    assert policy.next_delay(1, retry_after=0.0) == 0.0
    assert policy.next_delay(1, retry_after=60.0) == 5.0
    assert policy.next_delay(3, retry_after=1.0) is None


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"base_delay": -1.0}, {"max_delay": -1.0}, {"jitter": 1.5}],
)
def test_invalid_policy(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_attempt_is_one_based() -> None:
    with pytest.raises(ValueError):
        RetryPolicy().next_delay(0)


@pytest.mark.parametrize(
    ("status", "code", "connect_failed", "expected"),
    [
        (429, None, False, True),
        (429, 20429, False, True),
        (None, 20429, False, True),
        (503, None, False, True),
        (None, None, True, True),
        (429, 21611, False, False),
        (500, None, False, False),
        (502, None, False, False),
        (504, None, False, False),
        (400, 21211, False, False),
        (401, 20003, False, False),
        (None, None, False, False),
    ],
)
def test_is_retryable(
    status: int | None, code: int | None, connect_failed: bool, expected: bool
) -> None:
    assert is_retryable(status, code, connect_failed=connect_failed) is expected


def test_is_retryable_idempotent_reads_retry_5xx() -> None:
    assert is_retryable(500, None, connect_failed=False, idempotent=True)
    assert is_retryable(504, None, connect_failed=False, idempotent=True)
    assert not is_retryable(400, None, connect_failed=False, idempotent=True)
    assert not is_retryable(429, 21611, connect_failed=False, idempotent=True)
