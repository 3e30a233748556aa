"""Twilio as an engine plugin: the ``twilio`` logic (its handler and its fields in the
process format), the ``twilio`` callback form (signature checked against the sending
account, the message's sid names the task, statuses never go backwards) and the
reconciliation sweep beside the engine loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from orchestrator.engine.logic_checks import LogicFail
from orchestrator.engine.logic_types import LogicType
from orchestrator.engine.plugins import (
    Addressee,
    CallbackForm,
    CallbackRefused,
    JobHost,
    Plugin,
    StepHandler,
)
from orchestrator.engine.runtime import CALLBACK_URL_FORMS, Runtime
from orchestrator.store.records import CallbackRecord
from orchestrator.textcheck import problem
from orchestrator.twilio import messages_store as message_store
from orchestrator.twilio.actions import TwilioActions
from orchestrator.twilio.callback_sender import (
    SIGNED_REQUEST,
    BadSignature,
    signed_by_sender,
    verify_on_receipt,
)
from orchestrator.twilio.credentials import api_base
from orchestrator.twilio.errors import describe_error_code
from orchestrator.twilio.reconcile import recheck_after_restart, sweep_once
from orchestrator.twilio.statuses import supersedes

log = logging.getLogger("orchestrator.engine")


def _sid(payload: Mapping[str, Any]) -> Any:
    return payload.get("MessageSid") or payload.get("CallSid") or payload.get("SmsSid")


class TwilioForm(CallbackForm):
    """A Twilio status callback (MessageStatus or CallStatus)."""

    ref_name = "the callback's sid"

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def verify(
        self,
        conn: Connection,
        payload: dict[str, Any],
        *,
        url: str | None,
        signature: str | None,
        pairs: list[tuple[str, str]],
    ) -> bool:
        ref = _sid(payload)
        for name, value in (("the callback's sid", ref), ("AccountSid", payload.get("AccountSid"))):
            # Both are looked up before anything else reads them.
            found = problem(value) if isinstance(value, str) else None
            if found:
                raise CallbackRefused("INVALID_INPUT", f"{name} holds {found}")
        try:
            # Verified with the token of the account that sent the message.
            return verify_on_receipt(
                conn,
                self.rt,
                payload,
                str(ref) if ref else None,
                url=url,
                signature=signature,
                pairs=pairs,
            )
        except BadSignature:
            raise CallbackRefused(
                "INVALID_SIGNATURE", "X-Twilio-Signature is missing or does not match"
            ) from None

    def addressee(self, payload: dict[str, Any]) -> Addressee | None:
        ref = _sid(payload)
        if not ref:
            raise CallbackRefused("MISSING_SID", "the callback has no MessageSid or CallSid")
        status = payload.get("MessageStatus") or payload.get("CallStatus") or ""
        return Addressee(str(ref), f"{ref}:{status}:{payload.get('SequenceNumber', '')}")

    def accepted(
        self, conn: Connection, ref: str | None, payload: dict[str, Any], confirmed: bool
    ) -> None:
        if payload.get("MessageStatus") and confirmed and ref is not None:
            # A final status closes the message for the reconciliation sweep.
            status = payload.get("MessageStatus") or ""
            message_store.note_status(conn, ref, str(status))
        code = payload.get("ErrorCode")
        if code and "ErrorMessage" not in payload:
            payload["ErrorMessage"] = describe_error_code(code)

    def rejection(self, conn: Connection, cb: CallbackRecord) -> str | None:
        """A callback that came before its sender was known is checked against the
        sender's token now (see ``callback_sender``)."""
        signed = cb.payload.get(SIGNED_REQUEST)
        if signed is not None and not signed_by_sender(conn, self.rt, cb.ref, str(signed)):
            return "not signed by the account that sent the message"
        return None

    def advances(self, payload: dict[str, Any], data: dict[str, Any]) -> bool:
        if "CallStatus" in payload:
            return supersedes(payload.get("CallStatus"), data.get("CallStatus"), call=True)
        return supersedes(payload.get("MessageStatus"), data.get("MessageStatus"))

    def status(self, payload: dict[str, Any]) -> str | None:
        status = payload.get("MessageStatus") or payload.get("CallStatus")
        return status if isinstance(status, str) else None

    def hidden_fields(self) -> tuple[str, ...]:
        return (SIGNED_REQUEST,)


async def reconcile(rt: Runtime, engine: JobHost) -> None:
    """Fetch messages whose final status never came (see twilio/reconcile.py); soon
    after this start, those still open from before it."""
    s = rt.settings
    if s.reconcile_after <= 0:
        return
    restart_due: float | None = None
    try:
        restart_due = await engine.db(recheck_after_restart, rt, time.time())
    except Exception:
        log.exception("bringing forward the look at messages sent before this start failed")
    while not engine.stopping:
        try:
            while await sweep_once(rt) and not engine.stopping:
                await asyncio.sleep(0)
        except Exception:
            log.exception("reconciliation sweep failed; retrying later")
        pause = s.reconcile_interval
        if restart_due is not None and restart_due > time.time():
            pause = min(pause, restart_due - time.time() + 0.05)
        await asyncio.sleep(pause)


def _steps(rt: Runtime) -> Mapping[str, StepHandler]:
    return {"twilio": TwilioActions(rt)}


def _forms(rt: Runtime) -> Mapping[str, CallbackForm]:
    return {"twilio": TwilioForm(rt)}


# -- the process format ----------------------------------------------------------------
ACTIONS = (
    "send_sms",
    "send_mms",
    "make_call",
    "fetch_message",
    "fetch_call",
    "list_caller_ids",
    "send_to_many",
)


def _check(spec: Mapping[str, Any], fail: LogicFail) -> None:
    if spec.get("action") not in ACTIONS:
        raise fail(f"must be one of {', '.join(ACTIONS)}", "action")
    if not isinstance(spec.get("params", {}), Mapping):
        raise fail("must be a mapping", "params")
    if "base_url" in spec:
        # The author's, never a template: task data can never point a request, and its
        # credentials, elsewhere.
        base_url = spec.get("base_url")
        if not isinstance(base_url, str) or "{{" in base_url or "{%" in base_url:
            raise fail("must be a plain http(s) URL, not a template", "base_url")
        try:
            api_base(base_url)
        except ValueError as exc:
            raise fail(str(exc), "base_url") from exc
    cb = spec.get("status_callback")
    if cb is not None and not (isinstance(cb, str) or _is_callback_ref(cb)):
        raise fail("must be a URL template or {process, node, form}", "status_callback")


def _is_callback_ref(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("process"), str)
        and isinstance(value.get("node"), str)
        and value.get("form", "twilio") in CALLBACK_URL_FORMS
    )


TWILIO_LOGIC = LogicType(
    "twilio",
    description="a Twilio request (the Twilio plugin); actions may add keys",
    fields={
        "action": {"type": "string", "description": "send_sms, send_mms, fetch_message, …"},
        "params": {"type": "object"},
        "base_url": {
            "type": "string",
            "pattern": "^https?://[^\\s{}]+$",
            "description": (
                "this logic's Twilio base URL, e.g. https://api.twilio.com/2010-04-01/Accounts/"
                " (seed 002 urlString); never a template"
            ),
        },
        "status_callback": {
            "oneOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "properties": {
                        "process": {"type": "string"},
                        "node": {"type": "string"},
                        "form": {"enum": list(CALLBACK_URL_FORMS)},
                    },
                    "required": ["process", "node"],
                    "additionalProperties": False,
                },
            ]
        },
    },
    required=("action",),
    open=True,
    check=_check,
    needs_on_error=True,
)

plugin: Plugin[Runtime] = Plugin(
    "twilio", steps=_steps, forms=_forms, jobs=(reconcile,), logic_types=(TWILIO_LOGIC,)
)
