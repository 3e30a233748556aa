"""Which account's auth token verifies a Twilio status callback: the sending account's.

Twilio signs a callback with the auth token of the account that sent the message. The
``AccountSid`` in the body is the sender's own claim, so it cannot choose the token: an
account whose token is known here (any account a task ever sent with) could otherwise
sign callbacks for another account's messages. The sender of each message or call this
engine sent is recorded by its sid (``twilio/messages_store``):

- a callback for a recorded sid is verified with the sender's token, whatever the body
  says (403 when it does not match);
- a callback for a sid not recorded yet (it came before the step that sent the message
  committed, or the message was sent by another system) can only be verified with the
  token of the account it names. It is then stored with its signed request (URL,
  signature and form pairs, encrypted) and verified once more when it is applied: if by
  then the sid has a recorded sender, that sender's token must match too, or the
  callback is recorded as ``callback_rejected`` and changes nothing.

The tokens themselves are kept by ``AccountTokens``, once Twilio has accepted them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from sqlalchemy import Connection

from orchestrator.engine.runtime import Runtime
from orchestrator.store import kv
from orchestrator.twilio.context import twilio_of
from orchestrator.twilio.credentials import Credentials
from orchestrator.twilio.signature import validate_signature

log = logging.getLogger(__name__)

# A payload key holding the encrypted signed request of a callback whose sender was not
# known when it arrived; never merged into task data.
SIGNED_REQUEST = "__signed_request__"


class BadSignature(Exception):
    """The callback is not signed with the token of the account that sent the message."""


def verify_on_receipt(
    conn: Connection,
    rt: Runtime,
    payload: dict[str, Any],
    sid: str | None,
    *,
    url: str | None,
    signature: str | None,
    pairs: list[tuple[str, str]],
) -> bool:
    """Check a Twilio callback's signature (BadSignature when it fails). Returns True when
    it was checked against the recorded sender of ``sid``; otherwise the signed request
    is kept in ``payload`` for the check at apply time (``signed_by_sender``)."""
    payload.pop(SIGNED_REQUEST, None)  # only ever set here
    sender = twilio_of(rt).sender(conn, sid) if sid else None
    account = sender or str(payload.get("AccountSid") or "")
    token = twilio_of(rt).account_token(conn, account) if account else None
    if not token or not signature or url is None:
        raise BadSignature()
    if not validate_signature(url, pairs, signature, token):
        raise BadSignature()
    if sender is None:
        request = {"url": url, "signature": signature, "pairs": pairs}
        payload[SIGNED_REQUEST] = rt.vault.encrypt(json.dumps(request))
    return sender is not None


def signed_by_sender(conn: Connection, rt: Runtime, sid: str | None, sealed: str) -> bool:
    """At apply time, for a callback kept with its signed request: does the token of the
    sid's recorded sender (if there is one by now) match its signature?"""
    sender = twilio_of(rt).sender(conn, sid) if sid else None
    if sender is None:
        return True  # still unknown: the check on receipt is all there can be
    plain = rt.vault.decrypt(sealed)
    token = twilio_of(rt).account_token(conn, sender)
    if plain is None or not token:
        return False
    request = json.loads(plain)
    pairs = [(str(k), str(v)) for k, v in request["pairs"]]
    return validate_signature(str(request["url"]), pairs, str(request["signature"]), token)


class AccountTokens:
    """Keeps each account's auth token (encrypted) to verify its callbacks: only a token
    Twilio has just accepted (``remember`` is called after a 2xx), so a mistyped one
    (20003) never replaces the one that verifies the account's messages in flight."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._saved: dict[str, str] = {}  # account -> SHA-256 of the token saved last

    async def remember(self, creds: Credentials) -> None:
        """Save the token in a transaction of its own, before the step's commit, so it
        is there before the message's first callback can be."""
        if creds.username != creds.account_sid:
            return  # an API key secret cannot verify signatures
        if not creds.answered_by_twilio:
            return  # a test double's 2xx proves nothing about the token
        if creds.account_sid == self.rt.settings.twilio_account_sid:
            return  # TWILIO_AUTH_TOKEN verifies the default account
        digest = hashlib.sha256(creds.password.encode()).hexdigest()
        if self._saved.get(creds.account_sid) == digest:
            return
        sealed = self.rt.vault.encrypt(creds.password)

        def save() -> None:
            with self.rt.db.write() as conn:
                kv.save_account_token(conn, creds.account_sid, sealed, time.time())

        try:
            await self.rt.run_db(save)
        except Exception:
            # The message went out anyway; its callbacks are verified once a later send
            # of the account saves the token (the reconciliation sweep covers the gap).
            log.exception("saving the auth token of %s failed", creds.account_sid)
            return
        self._saved[creds.account_sid] = digest
