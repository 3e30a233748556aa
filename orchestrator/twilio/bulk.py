"""``send_to_many`` (seed 004): one body, a template over ``metadata``, to many numbers.

Every number is checked before anything is sent. Each message is its own effect (index
``BULK_INDEX_BASE * (logic index + 1) + position``), so a step that runs again after a
crash reuses what was sent and resends nothing. Messages go out one after another at
the sender's pace. Results: ``smsResult`` (message sid → number), ``failedNumbers``
(comma-separated, with ``failedDetails`` giving each one's error), and, with
``follow: {process: …}``, one task per sent message (ref = the sid) in that process,
which follows the message to its own final status.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Protocol

from orchestrator.engine.definition import Logic
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import LogicFailure, NewTask, StepResult
from orchestrator.engine.templates import render
from orchestrator.store.records import TaskRecord
from orchestrator.twilio import inputs as check
from orchestrator.twilio.credentials import Credentials
from orchestrator.twilio.pacing import PACING_HORIZON, Pacer

BULK_INDEX_BASE = 100_000  # > MAX_RECIPIENTS: positions never collide across logics
# (process id, wait node) a message's status callbacks go to, when one of ours.
CallbackTarget = tuple[int, str] | None


class BulkSender(Protocol):
    """What send_to_many uses of the twilio logic (``actions.TwilioActions``)."""

    rt: Runtime
    pacer: Pacer

    def status_callback(
        self, spec: Any, ctx: dict[str, Any]
    ) -> tuple[str | None, CallbackTarget]: ...

    def follower(self, spec: Any) -> tuple[int, int, str] | None: ...

    def follow_task(
        self, target: tuple[int, int, str], task: TaskRecord, data: dict[str, Any]
    ) -> NewTask: ...

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
    ) -> dict[str, Any]: ...


async def send_to_many(
    actions: BulkSender,
    task: TaskRecord,
    logic: Logic,
    creds: Credentials,
    raw: Mapping[str, Any],
    params: Mapping[str, Any],
    result: StepResult,
) -> None:
    numbers = check.recipients(raw, params)
    base: dict[str, Any] = {}
    check.sender(raw, params, base)
    metadata = params.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise check.invalid(raw, "metadata", "must be a JSON object")
    # Body is rendered once more over metadata: the task holds the template itself.
    body = render(params.get("Body"), {**metadata, "metadata": metadata})
    check.body_and_media(raw, {**params, "Body": body}, base, mms=False)
    ctx = {"root": {"task_id": task.id}}
    callback, target = await actions.rt.run_db(
        actions.status_callback, logic.get("status_callback"), ctx
    )
    if callback:
        base["StatusCallback"] = callback
    follow = await actions.rt.run_db(actions.follower, logic.get("follow"))

    sent: dict[str, str] = {}
    failed: list[str] = []
    details: dict[str, Any] = {}
    for position, number in enumerate(numbers):
        form = {**base, "To": number}
        slot = await actions.pacer.pace(form, horizon=None)
        # Most of a long wait is spent before the effect is recorded (see create_once).
        await asyncio.sleep(max(0.0, slot - time.time() - PACING_HORIZON))
        index = BULK_INDEX_BASE * (logic.index + 1) + position
        found = await actions.create_once(
            task, index, creds, form, result, slot=slot, raise_error=False, target=target
        )
        if "error" in found:
            error = found["error"]
            if error.get("error") in ("AUTHENTICATION_CONNECTION_ERROR", "TWILIO_CONNECTION_ERROR"):
                # Nothing else can get through either: the whole logic fails.
                raise LogicFailure({**error, "smsResult": sent, "failedNumbers": ",".join(failed)})
            failed.append(number)
            details[number] = {k: error.get(k) for k in ("error", "code", "message")}
            continue
        sid = str(found.get("sid"))
        sent[sid] = number
        if follow is not None:
            data = {"sid": sid, "Number_to": number, "status": found.get("status")}
            result.copies.append(actions.follow_task(follow, task, data))
    result.data["smsResult"] = sent
    result.data["failedNumbers"] = ",".join(failed)
    result.data["failedDetails"] = details
