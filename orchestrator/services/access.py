"""Who may call, as the HTTP layer asks: API keys (services/apikeys.py), console sessions
(services/sessions.py) and the Corezoid API's replay guard. Coroutines: each lookup runs
where the runtime runs database work. The CLI uses the synchronous functions directly."""

from __future__ import annotations

from orchestrator.engine.runtime import Runtime
from orchestrator.services import apikeys, sessions


class Access:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    @property
    def cookie_secret(self) -> str:
        """What console cookies are signed with (the server secret)."""
        return self._rt.secret

    @property
    def corezoid_window(self) -> float:
        """How far a Corezoid request's signed time may be from now, in seconds (0: any)."""
        return self._rt.settings.corezoid_time_window

    async def keys_configured(self) -> bool:
        """True when API keys are required: one is configured (ORCH_API_KEYS) or was ever
        created, even if all are revoked by now (then nobody gets in)."""
        # Asked on every API request without a key: a known answer skips the hop to
        # where database work runs (a thread, or SQLite's next batch).
        known = apikeys.known_any_key(self._rt)
        if known is not None:
            return known
        return await self._rt.run_db(apikeys.any_key, self._rt)

    async def any_active_key(self) -> bool:
        return await self._rt.run_db(apikeys.any_active_key, self._rt)

    async def key_for_secret(self, secret: str) -> tuple[str, str] | None:
        """(login, role) of the active key with this secret, else None."""
        if not secret:
            return None
        known = apikeys.known_key_for_secret(self._rt, secret)
        if known is not None:
            return known
        return await self._rt.run_db(apikeys.key_for_secret, self._rt, secret)

    async def login_for_secret(self, secret: str) -> str | None:
        """The login of the active key with this secret, else None."""
        if not secret:
            return None
        return await self._rt.run_db(apikeys.login_for_secret, self._rt, secret)

    async def role_of(self, login: str) -> str | None:
        """The role of an active key; None when ``login`` names no active key."""
        return await self._rt.run_db(apikeys.role_of, self._rt, login)

    async def secret_for_login(self, login: str) -> str | None:
        """The plain secret of an active key (to check a Corezoid signature)."""
        return await self._rt.run_db(apikeys.secret_for_login, self._rt, login)

    async def first_sighting(self, key: str, now: float, window: float) -> bool:
        """Record a signed request; False when it was seen within the last ``2 * window``."""
        return await self._rt.run_db(apikeys.first_sighting, self._rt, key, now, window)

    async def open_session(self, login: str, lifetime: float) -> str:
        """A new console session id for ``login``."""
        return await self._rt.run_db(sessions.open_session, self._rt, login, lifetime)

    async def session_role(self, sid: str | None, login: str) -> str | None:
        """The role of the key behind a live session of ``login``; None when the session
        was ended (logout, expiry) or the key was revoked."""
        return await self._rt.run_db(sessions.session_key, self._rt, sid, login)

    async def end_session(self, sid: str | None) -> None:
        await self._rt.run_db(sessions.end_session, self._rt, sid)
