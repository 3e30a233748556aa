"""The reconciliation sweep: messages with no final status after a while are fetched.

A message sent with a status callback into one of our wait nodes is tracked
(``twilio/messages_store``). Callbacks get lost (a network split, an outage here longer
than Twilio's retries, a carrier without DLRs), so once ``reconcile_after`` seconds have
passed without a final status, the sweep fetches the message
(``GET …/Messages/{Sid}.json``) and, when its status is new, stores a callback exactly as
if Twilio had posted it (same dedupe key: a real callback arriving later is a duplicate).
A message still not final is looked at again after another ``reconcile_after``, and
given up after ``GIVE_UP_AFTER``. Any number of workers may sweep: each batch is claimed.

After a start (``recheck_after_restart``), callbacks Twilio sent while no server was up
are gone (Twilio does not retry them by default), so every message still open from
before the start is looked at ``reconcile_after_restart`` seconds later instead of after
``reconcile_after``. Fetches are paced (``FETCHES_PER_SECOND``) so that a long backlog
does not run into Twilio's rate limits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from orchestrator.engine.runtime import Runtime
from orchestrator.store import callbacks as inbox
from orchestrator.store import kv
from orchestrator.store.notify import notify
from orchestrator.twilio import messages_store as message_store
from orchestrator.twilio.context import twilio_of
from orchestrator.twilio.credentials import Credentials
from orchestrator.twilio.errors import TwilioError, describe_error_code
from orchestrator.twilio.messages_store import FINAL_STATUSES, OpenMessage

log = logging.getLogger(__name__)

# Twilio keeps trying a message for at most its validity period (max 10 h); after three
# days without a final status there is nothing left to learn.
GIVE_UP_AFTER = 3 * 86400.0
# One sweeping engine fetches at most this many messages a second.
FETCHES_PER_SECOND = 20.0
# Starts closer together than this (a rolling restart of several engines) bring forward
# only the messages sent since the previous start: those before it are already due.
RESTART_GAP = 600.0
_LAST_START = "reconcile_restart_at"


def recheck_after_restart(rt: Runtime, started: float) -> float | None:
    """Bring forward the look at messages open from before ``started``; returns when
    they are due (None when the setting is off)."""
    s = rt.settings
    if s.reconcile_after <= 0 or s.reconcile_after_restart <= 0:
        return None
    due = started + float(s.reconcile_after_restart)
    with rt.db.write() as conn:
        last = float(kv.get_setting(conn, _LAST_START) or 0)
        since = last if 0 < started - last < RESTART_GAP else 0.0
        count = message_store.recheck_open(conn, created_from=since, created_before=started, at=due)
        kv.set_setting(conn, _LAST_START, repr(started))
    if count:
        log.info("%d messages sent before this start are looked up in %gs", count, due - started)
    return due


async def sweep_once(rt: Runtime) -> int:
    """One batch; returns how many messages were looked at (a full batch: call again)."""
    s = rt.settings
    now = time.time()
    due: list[OpenMessage] = await rt.run_db(_claim, rt, now)
    for message in due:
        began = time.monotonic()
        try:
            await _reconcile(rt, message, now)
        except Exception:
            log.exception("reconciling %s failed; it is looked at again later", message.sid)
        await asyncio.sleep(max(0.0, 1.0 / FETCHES_PER_SECOND - (time.monotonic() - began)))
    return len(due) if len(due) >= s.reconcile_batch else 0


def _claim(rt: Runtime, now: float) -> list[OpenMessage]:
    s = rt.settings
    with rt.db.write() as conn:
        return message_store.claim_due(conn, now, s.reconcile_batch, now + s.reconcile_after)


async def _reconcile(rt: Runtime, message: OpenMessage, now: float) -> None:
    token = await rt.run_db(_token, rt, message.account_sid)
    if token is None:
        log.warning(
            "no auth token for %s: %s cannot be reconciled", message.account_sid, message.sid
        )
        return
    creds = Credentials(message.account_sid, message.account_sid, token)
    try:
        found = await twilio_of(rt).client.fetch_message(creds, message.sid)
    except TwilioError as exc:
        log.warning("reconciling %s: %s", message.sid, exc)
        return
    status = str(found.get("status") or "")
    await rt.run_db(_apply, rt, message, found, status, now)


def _token(rt: Runtime, account_sid: str) -> str | None:
    with rt.db.read() as conn:
        token: str | None = twilio_of(rt).account_token(conn, account_sid)
        return token


def _apply(
    rt: Runtime, message: OpenMessage, found: dict[str, Any], status: str, now: float
) -> None:
    with rt.db.write() as conn:
        current = message_store.get(conn, message.sid)
        if current is None:
            return
        gave_up = (
            status not in FINAL_STATUSES
            and now - message_store.created_at(conn, message.sid) > GIVE_UP_AFTER
        )
        # Stored whatever the last known status: the dedupe key makes it a no-op when
        # the same status already came (by callback or an earlier sweep).
        if status:
            payload: dict[str, Any] = {
                "AccountSid": message.account_sid,
                "MessageSid": message.sid,
                "SmsSid": message.sid,
                "MessageStatus": status,
                "SmsStatus": status,
                "To": found.get("to"),
                "From": found.get("from"),
                "Reconciled": "fetched",
            }
            if found.get("error_code"):
                payload["ErrorCode"] = str(found["error_code"])
                payload["ErrorMessage"] = found.get("error_message") or describe_error_code(
                    found["error_code"]
                )
            cb_id = inbox.insert_callback(
                conn,
                process_id=message.process_id,
                node_id=message.node_id,
                form="twilio",
                payload=payload,
                received_at=now,
                ref=message.sid,
                dedupe_key=f"{message.sid}:{status}:",
                source_ip="reconcile",
            )
            if cb_id is not None:
                notify(conn)
                log.info("reconciled %s: %s (no callback had brought it)", message.sid, status)
        message_store.set_status(conn, message.sid, status or current.status, final=gave_up)
    rt.wake()
