"""Sender pacing: each sender (``From`` or messaging service) sends at most its rate.

A message waits for its sender's next slot (``store/senders``) before its effect row is
written; a slot far ahead defers the step (its lease is kept until then) instead of
holding a connection, so a burst queues rather than failing with 20429.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from orchestrator.config import parse_rates
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import StepDeferred
from orchestrator.store import senders
from orchestrator.store.records import Event, TaskRecord

# A sender slot at most this far ahead is waited for in place; a later one defers the step.
PACING_HORIZON = 2.0

Note = Callable[[TaskRecord, Event], Awaitable[None]]


class Pacer:
    def __init__(self, rt: Runtime, note: Note) -> None:
        self.rt = rt
        self._note = note
        self._rates = parse_rates(rt.settings.twilio_rate_limits)

    def rate_for(self, form: Mapping[str, Any]) -> tuple[str, float] | None:
        """(sender, messages per second) for a message form, None when unlimited."""
        sender = str(form.get("MessagingServiceSid") or form.get("From") or "")
        rate = self._rates.get(sender, self.rt.settings.twilio_default_rate)
        return (sender, rate) if sender and rate > 0 else None

    async def pace(
        self, form: Mapping[str, Any], *, horizon: float | None, task: TaskRecord | None = None
    ) -> float:
        """Take the sender's next slot and return it (0: unlimited); with a ``horizon``, a
        slot further away defers the step until then (``horizon=None``: any slot). The
        caller sleeps until the slot right before sending, so the database work between
        here and the request does not make sends bunch up."""
        limit = self.rate_for(form)
        if limit is None:
            return 0.0
        sender, rate = limit
        now = time.time()
        reach = float("inf") if horizon is None else horizon
        slot, taken = await self.rt.run_db(self._reserve, sender, 1.0 / rate, now, reach)
        if not taken:
            # Back half a horizon before the turn: its slot is then within reach.
            until = slot - reach / 2
            if task is not None:
                detail = {"sender": sender, "rate": rate, "until": round(until, 3)}
                await self._note(task, Event("twilio_paced", task.node_id, None, detail))
            raise StepDeferred(until, f"sender {sender} paced at {rate:g}/s")
        return float(slot)

    def _reserve(
        self, sender: str, interval: float, now: float, horizon: float
    ) -> tuple[float, bool]:
        with self.rt.db.write() as conn:
            return senders.reserve(conn, sender, interval, now, horizon)
