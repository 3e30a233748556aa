"""Opt-outs at send time (SPEC §10): a message to a recipient who opted out of its
sender is refused before anything is recorded or sent; Twilio's own refusal (21610)
records the pair, so the next send is refused here without asking Twilio."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from orchestrator.engine.runtime import Runtime
from orchestrator.store import conversations
from orchestrator.store import effects as effect_store

OPTED_OUT_CODE = "OPTED_OUT"
OPTED_OUT_ERROR = "RECIPIENT_OPTED_OUT"
TWILIO_UNSUBSCRIBED = "21610"


def _senders(form: Mapping[str, Any]) -> list[str]:
    return [str(form[k]) for k in ("From", "MessagingServiceSid") if form.get(k)][:2]


async def refusal(
    rt: Runtime, form: Mapping[str, Any], effect: tuple[str, int, int]
) -> dict[str, Any] | None:
    """The escalation fields when ``form``'s recipient opted out of its sender, unless
    this send (``effect``: task id, step, logic index) was begun before the opt-out: a
    step run again after a crash then resolves it from its record, as always."""
    if not str(form.get("To") or "") or not _senders(form):
        return None

    def check() -> dict[str, Any] | None:
        with rt.db.read() as conn:
            return refused(conn, form, effect)

    return await rt.run_db(check)


def refused(
    conn: Connection, form: Mapping[str, Any], effect: tuple[str, int, int]
) -> dict[str, Any] | None:
    """``refusal`` inside the caller's transaction: the one that records the send's
    intent, so the check and the record see the same opt-outs."""
    recipient = str(form.get("To") or "")
    senders = _senders(form)
    if not recipient or not senders:
        return None
    sender = conversations.opted_out(conn, recipient, senders)
    if sender is None or effect_store.exists(conn, *effect):
        return None
    return {
        "error": OPTED_OUT_ERROR,
        "code": OPTED_OUT_CODE,
        "message": f"{recipient} opted out of messages from {sender} (texted STOP); "
        "nothing was sent",
    }


async def note_refusal(rt: Runtime, form: Mapping[str, Any], error: Mapping[str, Any]) -> None:
    """Twilio refused the message because the recipient unsubscribed: remember it."""
    if str(error.get("code")) != TWILIO_UNSUBSCRIBED:
        return
    recipient = str(form.get("To") or "")
    senders = _senders(form)
    if not recipient or not senders:
        return

    def record() -> None:
        with rt.db.write() as conn:
            conversations.opt_out(
                conn, recipient, senders[0], f"twilio:{TWILIO_UNSUBSCRIBED}", time.time()
            )

    await rt.run_db(record)


MAX_LIST = 500


def list_view(
    rt: Runtime, *, recipient: str | None = None, sender: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Opt-outs, newest first (``GET /api/v1/opt-outs``, the CLI and the console)."""
    import datetime as dt

    with rt.db.read() as conn:
        rows = conversations.list_opt_outs(conn, recipient=recipient, sender=sender, limit=limit)
    for row in rows:
        at = dt.datetime.fromtimestamp(row["created_at"], dt.UTC)
        row["created_at"] = at.isoformat(timespec="milliseconds")
    return rows
