"""Unit tests for orchestrator/twilio/statuses.py (Twilio status ranking)."""

from __future__ import annotations

import itertools

import pytest

from orchestrator.twilio.statuses import (
    CALL_RANK,
    CALL_TERMINAL,
    MESSAGE_FAILED,
    MESSAGE_RANK,
    MESSAGE_TERMINAL,
    call_rank,
    message_rank,
    supersedes,
)

# The outbound message life cycle, in order.
MESSAGE_PROGRESS = ["accepted", "queued", "sending", "sent", "delivered", "read"]
MESSAGE_BEFORE_FINAL = ["accepted", "scheduled", "queued", "sending", "sent"]
CALL_PROGRESS = ["queued", "initiated", "ringing", "in-progress", "completed"]
CALL_BEFORE_FINAL = ["queued", "initiated", "ringing", "in-progress"]
UNKNOWN = ["bogus", "", "DELIVERED", "Delivered", " delivered", None]


def test_message_progress_is_strictly_increasing() -> None:
    ranks = [message_rank(s) for s in MESSAGE_PROGRESS]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)


def test_call_progress_is_strictly_increasing() -> None:
    ranks = [call_rank(s) for s in CALL_PROGRESS]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)


def test_rank_values() -> None:
    assert message_rank("accepted") == message_rank("scheduled") == 0
    assert message_rank("delivered") == message_rank("undelivered") == message_rank("failed")
    assert message_rank("read") > message_rank("delivered")
    assert call_rank("completed") == call_rank("busy") == call_rank("no-answer")


@pytest.mark.parametrize("status", UNKNOWN)
def test_unknown_status_ranks_lowest(status: str | None) -> None:
    assert message_rank(status) == -1
    assert call_rank(status) == -1
    assert all(message_rank(status) < r for r in MESSAGE_RANK.values())
    assert all(call_rank(status) < r for r in CALL_RANK.values())


def test_call_and_message_vocabularies() -> None:
    assert message_rank("in-progress") == -1
    assert message_rank("ringing") == -1
    assert call_rank("delivered") == -1
    assert call_rank("sent") == -1


def test_terminal_sets() -> None:
    assert MESSAGE_FAILED <= MESSAGE_TERMINAL
    assert MESSAGE_TERMINAL <= set(MESSAGE_RANK)
    assert CALL_TERMINAL <= set(CALL_RANK)
    assert "delivered" in MESSAGE_TERMINAL and "delivered" not in MESSAGE_FAILED
    assert "sent" not in MESSAGE_TERMINAL
    assert "in-progress" not in CALL_TERMINAL


def test_terminal_ranks_above_life_cycle() -> None:
    for final, before in itertools.product(MESSAGE_TERMINAL, MESSAGE_BEFORE_FINAL):
        assert message_rank(final) > message_rank(before), (final, before)
    for final, before in itertools.product(CALL_TERMINAL, CALL_BEFORE_FINAL):
        assert call_rank(final) > call_rank(before), (final, before)


# --------------------------------------------------------------------------- supersedes

MESSAGE_STATUSES = [*MESSAGE_RANK, *UNKNOWN]
CALL_STATUSES = [*CALL_RANK, *UNKNOWN]


def test_supersedes_is_strictly_higher_rank_messages() -> None:
    for new, current in itertools.product(MESSAGE_STATUSES, MESSAGE_STATUSES):
        if current is None:
            continue
        expected = message_rank(new) > message_rank(current)
        assert supersedes(new, current) is expected, (new, current)


def test_supersedes_is_strictly_higher_rank_calls() -> None:
    for new, current in itertools.product(CALL_STATUSES, CALL_STATUSES):
        if current is None:
            continue
        expected = call_rank(new) > call_rank(current)
        assert supersedes(new, current, call=True) is expected, (new, current)


def test_never_lower_or_equal() -> None:
    for statuses, rank, call in [
        (MESSAGE_RANK, message_rank, False),
        (CALL_RANK, call_rank, True),
    ]:
        for new, current in itertools.product(statuses, statuses):
            if rank(new) <= rank(current):
                assert not supersedes(new, current, call=call), (new, current)


def test_same_status_never_supersedes() -> None:
    for status in MESSAGE_RANK:
        assert not supersedes(status, status)
    for status in CALL_RANK:
        assert not supersedes(status, status, call=True)


@pytest.mark.parametrize(
    ("new", "current", "expected"),
    [
        ("sent", "queued", True),
        ("delivered", "sent", True),
        ("read", "delivered", True),
        ("queued", "sent", False),  # out of order: an older callback arrives late
        ("sent", "delivered", False),
        ("failed", "delivered", False),  # final statuses do not replace each other
        ("delivered", "failed", False),
        ("undelivered", "delivered", False),
        ("delivered", "delivered", False),
        ("delivered", "read", False),
        ("queued", "accepted", True),
        ("accepted", "scheduled", False),
    ],
)
def test_message_examples(new: str, current: str, expected: bool) -> None:
    assert supersedes(new, current) is expected


@pytest.mark.parametrize(
    ("new", "current", "expected"),
    [
        ("ringing", "initiated", True),
        ("in-progress", "ringing", True),
        ("completed", "in-progress", True),
        ("ringing", "in-progress", False),
        ("busy", "completed", False),
        ("no-answer", "ringing", True),
        ("initiated", "queued", True),
    ],
)
def test_call_examples(new: str, current: str, expected: bool) -> None:
    assert supersedes(new, current, call=True) is expected


def test_call_flag_selects_the_vocabulary() -> None:
    assert supersedes("in-progress", "ringing", call=True) is True
    assert supersedes("in-progress", "ringing") is False  # neither is a message status
    assert supersedes("delivered", "sent") is True
    assert supersedes("delivered", "sent", call=True) is False


def test_anything_supersedes_no_status() -> None:
    for status in [*MESSAGE_STATUSES]:
        assert supersedes(status, None) is True
        assert supersedes(status, None, call=True) is True


def test_unknown_statuses() -> None:
    assert supersedes("bogus", "queued") is False
    assert supersedes(None, "queued") is False
    assert supersedes("bogus", "other") is False
    assert supersedes("queued", "bogus") is True  # any known status beats an unknown one
    assert supersedes("accepted", "") is True
