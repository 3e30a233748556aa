"""Two-way SMS (SPEC §10) as an engine plugin: the ``expect_reply`` logic and the
``sms`` callback form, an incoming message applied by ``replies.deliver_incoming``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from orchestrator.engine.definition import Logic
from orchestrator.engine.plugins import CallbackForm, Plugin, StepHandler
from orchestrator.engine.replies import conversation, deliver_incoming
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.steps import StepResult
from orchestrator.store.records import CallbackRecord, TaskRecord


class ExpectReply:
    """Listen on the conversation from this step's commit (the reply may come early)."""

    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> str | None:
        result.listen = conversation(logic, ctx)
        return None


class IncomingMessage(CallbackForm):
    """A stored incoming SMS: it answers a listening task or starts one."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def deliver(
        self, conn: Connection, cb: CallbackRecord, owner: str | None, now: float
    ) -> list[TaskRecord] | None:
        return deliver_incoming(conn, self.rt, cb, owner, now)


def _steps(rt: Runtime) -> Mapping[str, StepHandler]:
    return {"expect_reply": ExpectReply()}


def _forms(rt: Runtime) -> Mapping[str, CallbackForm]:
    return {"sms": IncomingMessage(rt)}


plugin: Plugin[Runtime] = Plugin("two_way", steps=_steps, forms=_forms)
