"""Twilio status ranking: a callback never moves a message or call backwards.

Twilio does not promise callback order (fact sheet §3), so statuses are ranked and a
lower or equal rank arriving later is recorded but not applied.
"""

from __future__ import annotations

MESSAGE_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "receiving": 3,
    "received": 4,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "partially_delivered": 3,  # deprecated, not final: delivered/undelivered replace it
    "read": 5,
}
MESSAGE_TERMINAL = frozenset({"delivered", "undelivered", "failed", "canceled", "read"})
MESSAGE_FAILED = frozenset({"undelivered", "failed", "canceled"})

CALL_RANK = {
    "queued": 0,
    "initiated": 1,
    "ringing": 2,
    "in-progress": 3,
    "completed": 4,
    "busy": 4,
    "failed": 4,
    "no-answer": 4,
    "canceled": 4,
}
CALL_TERMINAL = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


def message_rank(status: str | None) -> int:
    return MESSAGE_RANK.get(status or "", -1)


def call_rank(status: str | None) -> int:
    return CALL_RANK.get(status or "", -1)


def supersedes(new: str | None, current: str | None, *, call: bool = False) -> bool:
    """Whether status ``new`` may replace ``current``: only a strictly higher rank does."""
    rank = call_rank if call else message_rank
    if current is None:
        return True
    return rank(new) > rank(current)
