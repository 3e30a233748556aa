"""Exactly-once creates of Twilio messages and calls.

Before a create is sent, an effect row is committed for (task, step, index). If the step
runs again (the worker died after the call, before its commit), the row is there: a
finished call's stored result is reused, and an unfinished one is resolved by looking
the message up in Twilio (``lost_answers``), never by sending again. A message is paced
by its sender (``pacing``) and refused when its recipient opted out.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from orchestrator import secretdata
from orchestrator.config import Settings
from orchestrator.engine import opt_outs
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import LogicFailure, StepDeferred, StepResult
from orchestrator.logs import task_fields
from orchestrator.store import effects as effect_store
from orchestrator.store import tasks as task_store
from orchestrator.store.records import Event, TaskRecord
from orchestrator.twilio.bulk import CallbackTarget
from orchestrator.twilio.callback_sender import AccountTokens
from orchestrator.twilio.client import RetryHook
from orchestrator.twilio.context import TwilioContext
from orchestrator.twilio.credentials import Credentials
from orchestrator.twilio.errors import TwilioError
from orchestrator.twilio.lost_answers import adoption, resolve_unknown
from orchestrator.twilio.pacing import PACING_HORIZON, Pacer
from orchestrator.twilio.reconcile import GIVE_UP_AFTER

log = logging.getLogger(__name__)

TWILIO_SEND_SLOTS = 16


class OnceSender:
    """Creates each message or call once; paces senders; notes waits in the history."""

    def __init__(self, runtime: Runtime, twilio: TwilioContext) -> None:
        self.rt = runtime
        self.twilio = twilio
        self.tokens = AccountTokens(runtime)
        # As many sends at once as the Twilio client has connections (see client.py).
        self._send_slots = asyncio.Semaphore(TWILIO_SEND_SLOTS)
        self.pacer = Pacer(runtime, self.note)

    async def create_once(
        self,
        task: TaskRecord,
        index: int,
        creds: Credentials,
        form: dict[str, Any],
        result: StepResult,
        *,
        kind: str = "message",
        slot: float | None = None,
        raise_error: bool = True,
        target: CallbackTarget = None,
    ) -> dict[str, Any]:
        """Create a message or call exactly once for (task, step, index). Returns the
        Twilio record; on an error, raises LogicFailure (or returns {"error": …} when
        ``raise_error`` is False). A message whose callbacks go to ``target`` (a wait
        node) is tracked for the reconciliation sweep."""
        # A message is refused when its recipient opted out of its sender: checked in
        # the transaction that records the intent (``_begin``), or, for a paced sender,
        # before pacing, so that an opted-out pair takes no sender's slot.
        opt_out_form = form if kind == "message" else None
        if opt_out_form is not None and slot is None and self.pacer.rate_for(form):
            refused = await opt_outs.refusal(self.rt, form, (task.id, task.step, index))
            if refused is not None:
                if raise_error:
                    raise LogicFailure(refused)
                return {"error": refused}
            opt_out_form = None
        if kind == "message" and slot is None:
            slot = await self.pacer.pace(form, horizon=PACING_HORIZON, task=task)
        summary = {k: v for k, v in form.items() if k != "Body"}
        summary["account_sid"] = creds.account_sid
        summary["body_sha256"] = hashlib.sha256(str(form.get("Body", "")).encode()).hexdigest()
        # The send slot is taken before the attempt is recorded: a worker killed while
        # queueing for Twilio leaves no "started" record, so nothing is in doubt.
        async with self._send_slots:
            outcome = await self._record_and_send(
                task, index, creds, form, summary, kind, slot, opt_out_form
            )
        if "refused" in outcome:
            if raise_error:
                raise LogicFailure(dict(outcome["refused"]))
            return {"error": dict(outcome["refused"])}
        if "message" in outcome:
            # Only a token Twilio has just accepted is kept: a mistyped one (20003) must
            # never replace the one that verifies the account's messages in flight.
            await self.tokens.remember(creds)
        if "message" in outcome and "track" not in outcome:
            track = self.tracking(outcome["message"], creds, target, kind)
            outcome = {**outcome, "track": track} if track else outcome
        if outcome.get("track") and creds.answered_by_twilio:
            # Known before the step's commit records it: a callback may come first.
            self.twilio.note_sender(outcome["track"]["sid"], outcome["track"]["account_sid"])
        result.effects_done.append((index, outcome))
        if outcome.get("adopted"):
            # Visible recovery: the history says which message was adopted, and why.
            detail = {"sid": outcome["message"].get("sid"), **adoption(outcome)}
            result.events.append(Event("twilio_adopted", task.node_id, None, detail))
        if "error" in outcome:
            if kind == "message":
                await opt_outs.note_refusal(self.rt, form, outcome["error"])
            if raise_error:
                raise LogicFailure(dict(outcome["error"]))
            return {"error": dict(outcome["error"])}
        return dict(outcome["message"])

    async def _record_and_send(
        self,
        task: TaskRecord,
        index: int,
        creds: Credentials,
        form: dict[str, Any],
        summary: dict[str, Any],
        kind: str,
        slot: float | None,
        opt_out_form: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        prior = await self.rt.run_db_grouped(self._begin, task, index, summary, kind, opt_out_form)
        if prior is not None and "refused" in prior:
            return prior
        if prior is not None and prior["status"] == "done":
            return secretdata.unseal(self.rt.vault, prior["result"] or {})
        if prior is not None:
            # Begun by a worker that lost its lease: it may still be waiting for Twilio's
            # answer. Only once that answer can no longer come is the message looked up.
            settled = prior["created_at"] + self._answer_deadline()
            if time.time() < settled:
                raise StepDeferred(settled, "an earlier attempt of this send may still finish")
            return await resolve_unknown(
                self.twilio.client,
                creds,
                form,
                prior["created_at"],
                kind,
                "an earlier attempt stopped unanswered",
            )
        create = (
            self.twilio.client.create_call if kind == "call" else self.twilio.client.create_message
        )
        # The sender's slot is at most PACING_HORIZON away (a worker dying meanwhile leaves
        # a started record: the retry looks the message up and never sends blindly).
        if slot and slot > time.time():
            await asyncio.sleep(slot - time.time())
        # Kept with the effect: when the sender's slot was and when the request left.
        paced = {"slot": slot, "sent_at": time.time()} if slot else None
        try:
            message = await create(creds, form, on_retry=self._retry_hook(task))
            if log.isEnabledFor(logging.INFO):
                slug = self.rt.definition(task.version_id)[2].slug
                sid = str(message.get("sid") or "") or None
                log.info(
                    "Twilio %s created", kind, extra=task_fields(task.id, slug, task.node_id, sid)
                )
            return {"message": message, "paced": paced} if paced else {"message": message}
        except TwilioError as exc:
            if exc.outcome_unknown:
                return await resolve_unknown(
                    self.twilio.client,
                    creds,
                    form,
                    time.time() - 1,
                    kind,
                    f"no answer to the create ({exc})",
                )
            return {"error": exc.as_task_data()}

    def _retry_hook(self, task: TaskRecord) -> RetryHook:
        """While the client backs off (429/20429, 503, no connection), the wait is written
        to the task's history at once (``twilio_retry``), so the task is visibly waiting,
        and why. A paced send deferred for its sender's turn says so too
        (``twilio_paced``)."""

        async def hook(attempt: int, delay: float, reason: str) -> None:
            detail = {"attempt": attempt, "retry_in": round(delay, 3), "reason": reason}
            await self.note(task, Event("twilio_retry", task.node_id, None, detail))

        return hook

    async def note(self, task: TaskRecord, event: Event) -> None:
        """Write a history event now (not with the step), so a wait is visible while it
        lasts; visibility only, so a failure here never fails the send."""

        def write() -> None:
            with self.rt.db.write() as conn:
                task_store.add_events(conn, task.id, [event], time.time())

        try:
            await self.rt.run_db(write)
        except Exception:
            log.exception("recording %s of task %s failed", event.kind, task.id)

    def _answer_deadline(self) -> float:
        """How long after an attempt began its answer could still arrive (all retries)."""
        s: Settings = self.rt.settings
        return (s.twilio_timeout + 5.0) * max(s.twilio_max_attempts, 4) + 10.0

    def _begin(
        self,
        task: TaskRecord,
        index: int,
        summary: dict[str, Any],
        kind: str,
        opt_out_form: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Record the intent (None: a first attempt, else the earlier record), or
        {"refused": fields} when ``opt_out_form``'s recipient opted out (nothing kept).
        Run with the engine's jobs (``run_db_grouped``): it reads all it returns anew, so
        it may start over; its caller sends only once its record is committed."""
        with self.rt.db.write() as conn:
            if opt_out_form is not None:
                refused = opt_outs.refused(conn, opt_out_form, (task.id, task.step, index))
                if refused is not None:
                    return {"refused": refused}
            prior = effect_store.begin(
                conn, task.id, task.step, index, f"twilio.create_{kind}", summary, time.time()
            )
        return prior

    def tracking(
        self,
        message: Mapping[str, Any],
        creds: Credentials,
        target: CallbackTarget,
        kind: str = "message",
    ) -> dict[str, Any] | None:
        """What records a message or call whose callbacks come to one of our wait nodes:
        its sender (whose token verifies them) and, for a message, its opening for the
        reconciliation sweep. It rides with the effect's outcome and is written in the
        step's own commit (``effects.finish``)."""
        if target is None or not message.get("sid"):
            return None
        now = time.time()
        after = self.rt.settings.reconcile_after
        return {
            "sid": str(message["sid"]),
            "account_sid": creds.account_sid,
            "process_id": target[0],
            "node_id": target[1],
            "status": str(message.get("status") or "queued"),
            "now": now,
            # With the sweep off, the row only names the sender (looked at if it is
            # turned on later, after its give-up delay: nothing to learn by then).
            "check_at": now + (after if after > 0 else GIVE_UP_AFTER),
            "final": kind == "call",  # calls are never swept
        }
