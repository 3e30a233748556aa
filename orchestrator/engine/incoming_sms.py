"""Incoming SMS at the webhook (SPEC §10): store the message, record opt-outs, answer.

The webhook only stores (the engine applies the message, see ``replies``), so its answer
is quick and a retry of the same MessageSid stores nothing new. Opt-out keywords take
effect here, in the same transaction: a send that starts after Twilio got our answer is
already refused.
"""

from __future__ import annotations

import logging
from typing import Any
from xml.sax.saxutils import escape

from sqlalchemy import Connection

from orchestrator.engine.definition import ProcessDefinition
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.templates import TemplateError, render
from orchestrator.secretdata import seal
from orchestrator.store import callbacks as inbox
from orchestrator.store import conversations

log = logging.getLogger(__name__)

# Twilio's default opt-out and opt-in keywords (the whole body, trimmed, any case).
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
# The longest MessageSid / address kept (a sid is 34, "whatsapp:+…" about 25).
MAX_ADDRESS = 64
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


class IncomingRefused(ValueError):
    """The form lacks what an incoming message has; nothing was stored."""


def keyword(body: Any) -> str | None:
    word = str(body or "").strip().upper()
    return word if word in OPT_OUT_KEYWORDS or word in OPT_IN_KEYWORDS else None


def twiml(message: str | None) -> str:
    if message is None:
        return EMPTY_TWIML
    return EMPTY_TWIML.replace(
        "<Response/>", f"<Response><Message>{escape(message)}</Message></Response>"
    )


def store_incoming(
    conn: Connection,
    rt: Runtime,
    process_id: int,
    node_id: str,
    definition: ProcessDefinition,
    payload: dict[str, Any],
    *,
    source_ip: str | None,
    now: float,
) -> tuple[int | None, str]:
    """(callback id, or None for a retry of a stored message; the TwiML answer)."""
    sid = payload.get("MessageSid") or payload.get("SmsSid")
    person, ours = payload.get("From"), payload.get("To")
    if not sid or not person or not ours:
        raise IncomingRefused("an incoming message needs MessageSid, From and To")
    if any(not isinstance(v, str) or len(v) > MAX_ADDRESS for v in (sid, person, ours)):
        raise IncomingRefused(
            f"MessageSid, From and To must be single values of at most {MAX_ADDRESS} characters"
        )
    cb_id = inbox.insert_callback(
        conn,
        process_id=process_id,
        node_id=node_id,
        form="sms",
        payload=seal(rt.vault, payload),
        received_at=now,
        ref=str(sid),
        dedupe_key=f"sms:{sid}",
        source_ip=source_ip,
    )
    word = keyword(payload.get("Body"))
    if word in OPT_OUT_KEYWORDS:
        conversations.opt_out(conn, str(person), str(ours), f"keyword:{word}", now)
    elif word in OPT_IN_KEYWORDS:
        conversations.opt_in(conn, str(person), str(ours))
    return cb_id, twiml(_immediate_reply(conn, definition, payload, word))


def _immediate_reply(
    conn: Connection, definition: ProcessDefinition, payload: dict[str, Any], word: str | None
) -> str | None:
    """The process's ``incoming_sms.reply``, for a message that starts a task of it: not
    for a keyword (Twilio answers those) nor a reply a listening task takes."""
    template = (definition.incoming_sms or {}).get("reply")
    if not template or word is not None:
        return None
    if conversations.is_listened(conn, str(payload["From"]), str(payload["To"])):
        return None
    try:
        text = render(template, payload)
    except TemplateError as exc:
        log.warning("incoming_sms.reply of %s: %s", definition.slug, exc.message)
        return None
    return None if text is None or str(text) == "" else str(text)
