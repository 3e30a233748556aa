"""Two-way SMS (SPEC §10) as an engine plugin: the ``expect_reply`` logic and the
``sms`` callback form, an incoming message applied by ``replies.deliver_incoming``; it
declares ``wait_reply`` too (a wait node's first logic, which the interpreter runs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from orchestrator.engine.definition import Logic
from orchestrator.engine.logic_checks import LogicFail
from orchestrator.engine.logic_types import LogicType
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


def _check_conversation(spec: Mapping[str, Any], fail: LogicFail) -> None:
    for key in ("from", "to"):
        if not (isinstance(spec.get(key), str) and spec[key].strip()):
            raise fail("must be a phone number or a template giving one", key)


CONVERSATION_FIELDS = {
    "from": {
        "type": "string",
        "minLength": 1,
        "description": "the person's number (E.164), e.g. {{ Number_to }}",
    },
    "to": {
        "type": "string",
        "minLength": 1,
        "description": "our number the reply is sent to, e.g. {{ Number_from }}",
    },
}
EXPECT_REPLY = LogicType(
    "expect_reply",
    description=(
        "listen for the next SMS from `from` (the person) to `to` (our number) from now on; "
        "it is applied when the task next waits"
    ),
    fields=CONVERSATION_FIELDS,
    required=("from", "to"),
    check=_check_conversation,
    listens=True,
)
WAIT_REPLY = LogicType(
    "wait_reply",
    description=(
        "first logic of a wait node: wait for the next SMS from `from` (the person) to `to` "
        "(our number); writes reply, reply_sid"
    ),
    fields=CONVERSATION_FIELDS,
    required=("from", "to"),
    check=_check_conversation,
    waits=True,
    listens=True,
)

plugin: Plugin[Runtime] = Plugin(
    "two_way", steps=_steps, forms=_forms, logic_types=(EXPECT_REPLY, WAIT_REPLY)
)
