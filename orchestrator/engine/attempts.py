"""How the worker commits a step or a delivery: each attempt on copies of what the
commit changes (PostgreSQL may run a transaction again), and with the steps that follow
(transitions.follower) unless that failed."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from orchestrator.engine.steps import Conflict, Recheck, StepResult
from orchestrator.store.records import TaskRecord

log = logging.getLogger("orchestrator.engine")
T = TypeVar("T")


def followed_or_not(attempt: Callable[[bool], T], what: str) -> T:
    """``attempt(True)`` (with followed steps), else once more without them when that
    failed (a conflict raises again there if it was the attempt's own): a followed step's
    failure (a bug, a task it met changed) is
    then the released task's own, met when the worker runs it, and is not charged to
    the step or delivery that released it. (The failed attempt left nothing: its
    ``write()`` block was rolled back, or poisoned its batch, whose jobs run again.) A
    database error (a lock wait timed out, an outage) is the caller's, as before: a
    batch that meets one starts over job by job (store/group_commit.py)."""
    try:
        return attempt(True)
    except Recheck:
        raise
    except Conflict:
        # Possibly a followed step's (a task it wrote, met again stale): without them
        # the attempt is as before followed steps existed, and a real conflict (a
        # lease lost) raises again.
        log.warning("committing %s with the steps that follow conflicted; without them", what)
        return attempt(False)
    except SQLAlchemyError:
        raise
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in DRIVERS:
            raise
        log.exception("committing %s with the steps that follow failed; without them", what)
        return attempt(False)


# Database drivers whose errors may come unwrapped (a statement run on their cursor).
DRIVERS = frozenset({"psycopg", "sqlite3"})


def for_attempt(task: TaskRecord, result: StepResult) -> tuple[TaskRecord, StepResult]:
    """Copies of what commit_step changes, so that a failed attempt leaves the step as it
    was. It assigns attributes of the task, of the result and of the result's copies and
    modifications, but changes no dict or list they hold (the task's new data is built
    afresh from the result's: secretdata.split), so shallow copies suffice; a deep copy
    cost some 8% of the GIL's time on PostgreSQL (50 µs against 4 per attempt). A test
    (unit/engine/test_transitions.py) checks that the originals come out unchanged."""
    mine = copy.copy(task)
    outcome = copy.copy(result)
    outcome.copies = [copy.copy(c) for c in result.copies]
    outcome.modifications = [copy.copy(m) for m in result.modifications]
    return mine, outcome
