"""Which account's auth token verifies a Twilio status callback: the sending account's.

Twilio signs a callback with the auth token of the account that sent the message. The
``AccountSid`` in the body is the sender's own claim, so it cannot choose the token: an
account whose token is known here (any account a task ever sent with) could otherwise
sign callbacks for another account's messages. The sender of each message or call this
engine sent is recorded by its sid (``store/twilio_messages``):

- a callback for a recorded sid is verified with the sender's token, whatever the body
  says (403 when it does not match);
- a callback for a sid not recorded yet (it came before the step that sent the message
  committed, or the message was sent by another system) can only be verified with the
  token of the account it names. It is then stored with its signed request (URL,
  signature and form pairs, encrypted) and verified once more when it is applied: if by
  then the sid has a recorded sender, that sender's token must match too, or the
  callback is recorded as ``callback_rejected`` and changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection

from orchestrator.engine.runtime import Runtime
from orchestrator.store import twilio_messages as message_store
from orchestrator.twilio.signature import validate_signature

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
    sender = message_store.sender(conn, sid) if sid else None
    account = sender or str(payload.get("AccountSid") or "")
    token = rt.account_token(conn, account) if account else None
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
    sender = message_store.sender(conn, sid) if sid else None
    if sender is None:
        return True  # still unknown: the check on receipt is all there can be
    plain = rt.vault.decrypt(sealed)
    token = rt.account_token(conn, sender)
    if plain is None or not token:
        return False
    request = json.loads(plain)
    pairs = [(str(k), str(v)) for k, v in request["pairs"]]
    return validate_signature(str(request["url"]), pairs, str(request["signature"]), token)
