"""What the Twilio plugin keeps per runtime (``Runtime.extension``): the API client and
the account tokens that verify callbacks. The engine core holds neither."""

from __future__ import annotations

from sqlalchemy import Connection

from orchestrator.engine.runtime import Runtime
from orchestrator.store import kv
from orchestrator.twilio.client import TwilioClient
from orchestrator.twilio.retry import RetryPolicy


class TwilioContext:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._client: TwilioClient | None = None

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

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def twilio_of(rt: Runtime) -> TwilioContext:
    """The runtime's Twilio context, made on first use."""
    return rt.extension(TwilioContext)
