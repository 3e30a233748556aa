"""What the Twilio plugin keeps per runtime (``Runtime.extension``): the API client, the
account tokens that verify callbacks and the known senders of sids. The engine core
holds none of them."""

from __future__ import annotations

from sqlalchemy import Connection

from orchestrator.engine.runtime import Runtime
from orchestrator.store import kv
from orchestrator.twilio import messages_store as message_store
from orchestrator.twilio.client import TwilioClient
from orchestrator.twilio.retry import RetryPolicy

# Senders of messages and calls kept in memory (sid -> account), some 10,000 round trips
# worth; past that the map starts again empty (a miss only costs the query).
SENDERS_KEPT = 10_000


class TwilioContext:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._client: TwilioClient | None = None
        # Which account sent a sid is a fact that never changes, so it is kept once
        # known: each status callback needs it to pick the token that verifies it (a
        # query per callback, two per SMS round trip). Only known senders are kept: a
        # sid's record may appear later.
        self._senders: dict[str, str] = {}

    @property
    def client(self) -> TwilioClient:
        if self._client is None:
            s = self.rt.settings
            self._client = TwilioClient(
                s.twilio_api_url,
                timeout=s.twilio_timeout,
                retry=RetryPolicy(max_attempts=s.twilio_max_attempts),
                observe=self.rt.metrics.twilio_request,
            )
        return self._client

    def account_token(self, conn: Connection, account_sid: str) -> str | None:
        """The auth token that signs callbacks for ``account_sid``, if we know it."""
        if account_sid and account_sid == self.rt.settings.twilio_account_sid:
            return self.rt.settings.twilio_auth_token
        stored = kv.get_account_token(conn, account_sid)
        return self.rt.vault.decrypt(stored) if stored else None

    def note_sender(self, sid: str, account_sid: str) -> None:
        """Twilio answered ``sid`` for ``account_sid`` (a create, or a recorded sender).
        The first sender known for a sid stays, as in the database (its record is
        inserted once, never replaced)."""
        if len(self._senders) >= SENDERS_KEPT:
            self._senders.clear()
        self._senders.setdefault(sid, account_sid)

    def sender(self, conn: Connection, sid: str) -> str | None:
        """The account that sent ``sid``, when this engine sent it (message_store.sender)."""
        known = self._senders.get(sid)
        if known is not None:
            return known
        found = message_store.sender(conn, sid)
        if found is not None:
            self.note_sender(sid, found)
        return found

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def twilio_of(rt: Runtime) -> TwilioContext:
    """The runtime's Twilio context, made on first use."""
    return rt.extension(TwilioContext)
