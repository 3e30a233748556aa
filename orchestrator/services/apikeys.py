"""API keys: a login id and a secret. They come from the database (``orchestrator apikey
create``) and from ORCH_API_KEYS (``login:secret,...``).

A database key's secret is shown once, at creation, and stored as a SHA-256 hash (it is
32 random bytes, so a plain hash cannot be brute-forced) plus an encrypted copy, which
the Corezoid API needs: its signatures are keyed with the plain secret.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from orchestrator.config import Settings
from orchestrator.crypto import Vault
from orchestrator.store import apikeys as key_store
from orchestrator.store.db import Database

LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
# Path segments of the callback URLs, which share /api/1/json/{login}/... with the
# Corezoid API: a key with such a login could never be used there.
RESERVED_LOGINS = frozenset({"callback", "plugins", "public"})
MIN_ENV_SECRET = 16
# "read" keys may only GET; "operate" keys may also submit, modify, repair and deploy.
ROLES = ("read", "operate")
READ, OPERATE = ROLES


# The API checks a key on every request. Its answers are kept this long, so a key created
# or revoked by another process (the CLI, another server) takes effect here up to this
# late; one created or revoked through this process takes effect at once.
KEY_CACHE_SECONDS = 1.0
_KEY_CACHE_MAX = 1024  # entries; a flood of distinct secrets cannot grow it further


class _KeyCache:
    """{(database url, question): (when answered, answer)}, for any_key and the lookups
    of known secrets (unknown ones are not kept: they are answered from the table)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[float, bool | tuple[str, str]]] = {}

    def get(self, key: tuple[str, str]) -> bool | tuple[str, str] | None:
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] >= KEY_CACHE_SECONDS:
            return None
        return entry[1]

    def put(self, key: tuple[str, str], value: bool | tuple[str, str]) -> None:
        with self._lock:
            if len(self._entries) >= _KEY_CACHE_MAX:
                self._entries.clear()
            self._entries[key] = (time.monotonic(), value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_cache = _KeyCache()


class KeyContext(Protocol):
    """What key lookups need (a Runtime has it): the database, the settings (for
    ORCH_API_KEYS) and the vault (a key's secret is stored encrypted)."""

    @property
    def db(self) -> Database: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def vault(self) -> Vault: ...


class ApiKeyError(ValueError):
    """A refused key operation; the message says why."""


@dataclass(frozen=True)
class ApiKey:
    login: str
    source: str  # "database" | "environment"
    created_at: float | None = None
    revoked_at: float | None = None
    role: str = OPERATE

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_login(login: str) -> None:
    if not LOGIN.match(login):
        raise ApiKeyError(
            f"login {login!r} must be 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    if login in RESERVED_LOGINS:
        raise ApiKeyError(f"login {login!r} is reserved (it names a callback URL form)")


@functools.lru_cache(maxsize=8)
def parse_env_keys(raw: str | None) -> dict[str, str]:
    """ORCH_API_KEYS as {login: secret}; ApiKeyError (never echoing a secret) if malformed."""
    return {login: secret for login, (secret, _role) in _parse_env(raw).items()}


@functools.lru_cache(maxsize=8)
def parse_env_roles(raw: str | None) -> dict[str, str]:
    """ORCH_API_KEYS as {login: role}."""
    return {login: role for login, (_secret, role) in _parse_env(raw).items()}


@functools.lru_cache(maxsize=8)
def _parse_env(raw: str | None) -> dict[str, tuple[str, str]]:
    """``login:secret`` or ``login:secret:read|operate`` entries, comma-separated."""
    keys: dict[str, tuple[str, str]] = {}
    if not raw:
        return keys
    for n, item in enumerate(raw.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        login, sep, secret = item.partition(":")
        login = login.strip()
        role = OPERATE
        head, colon, tail = secret.rpartition(":")
        if colon and tail in ROLES:
            secret, role = head, tail
        if not sep or not secret:
            raise ApiKeyError(f"ORCH_API_KEYS entry {n} is not login:secret")
        _check_login(login)
        if len(secret) < MIN_ENV_SECRET:
            raise ApiKeyError(
                f"ORCH_API_KEYS: the secret of {login!r} is shorter than {MIN_ENV_SECRET} "
                "characters; use a long random one"
            )
        if login in keys:
            raise ApiKeyError(f"ORCH_API_KEYS names {login!r} twice")
        keys[login] = (secret, role)
    return keys


def _env(ctx: KeyContext) -> dict[str, str]:
    return parse_env_keys(ctx.settings.api_keys)


def create_key(ctx: KeyContext, login: str | None = None, role: str = OPERATE) -> tuple[str, str]:
    """(login, secret) of a new key. The secret is not retrievable later."""
    if role not in ROLES:
        raise ApiKeyError(f"role {role!r} must be one of {', '.join(ROLES)}")
    if login is None:
        login = "k" + secrets.token_hex(6)
    _check_login(login)
    if login in _env(ctx):
        raise ApiKeyError(f"login {login!r} is already configured in ORCH_API_KEYS")
    secret = secrets.token_urlsafe(32)
    encrypted = ctx.vault.encrypt(secret)
    with ctx.db.write() as conn:
        if not key_store.insert_key(conn, login, hash_secret(secret), encrypted, time.time(), role):
            raise ApiKeyError(f"login {login!r} is taken (revoked logins stay taken)")
    _cache.clear()
    return login, secret


def list_keys(ctx: KeyContext) -> list[ApiKey]:
    roles = parse_env_roles(ctx.settings.api_keys)
    out = [ApiKey(login, "environment", role=roles[login]) for login in _env(ctx)]
    with ctx.db.read() as conn:
        out += [
            ApiKey(k.login, "database", k.created_at, k.revoked_at, k.role)
            for k in key_store.list_keys(conn)
        ]
    return out


def revoke_key(ctx: KeyContext, login: str) -> None:
    if login in _env(ctx):
        raise ApiKeyError(f"{login!r} comes from ORCH_API_KEYS: remove it there and restart")
    with ctx.db.write() as conn:
        if key_store.revoke(conn, login, time.time()):
            _cache.clear()
            return
        existing = key_store.get_key(conn, login)
    if existing is None:
        raise ApiKeyError(f"no API key {login!r}")
    raise ApiKeyError(f"API key {login!r} is already revoked")


def any_key(ctx: KeyContext) -> bool:
    """Keys are required: one is configured, or was. Revoking the last key leaves the API
    closed to everyone until a new one is created; it never reopens it to loopback."""
    known = known_any_key(ctx)
    if known is not None:
        return known
    with ctx.db.read() as conn:
        created = key_store.any_created(conn)
    _cache.put((ctx.db.url, "any"), created)
    return created


def known_any_key(ctx: KeyContext) -> bool | None:
    """any_key's answer when no database read is needed (ORCH_API_KEYS, or a fresh cached
    answer), else None: the API asks this on its event loop before sending the question
    to where database work runs (a thread, or SQLite's batches)."""
    if _env(ctx):
        return True
    cached = _cache.get((ctx.db.url, "any"))
    return cached if isinstance(cached, bool) else None


def any_active_key(ctx: KeyContext) -> bool:
    if _env(ctx):
        return True
    with ctx.db.read() as conn:
        return key_store.any_active(conn)


def login_for_secret(ctx: KeyContext, secret: str) -> str | None:
    """The login of the active key with this secret."""
    found = key_for_secret(ctx, secret)
    return found[0] if found else None


def key_for_secret(ctx: KeyContext, secret: str) -> tuple[str, str] | None:
    """(login, role) of the active key with this secret."""
    known = known_key_for_secret(ctx, secret)
    if known is not None:
        return known
    digest = hash_secret(secret)
    cache_key = (ctx.db.url, "hash:" + digest)
    with ctx.db.read() as conn:
        key = key_store.find_by_hash(conn, digest)
    if key is None or key.revoked_at is not None:
        return None
    if not hmac.compare_digest(key.secret_hash, digest):
        return None
    _cache.put(cache_key, (key.login, key.role))
    return (key.login, key.role)


def known_key_for_secret(ctx: KeyContext, secret: str) -> tuple[str, str] | None:
    """key_for_secret's answer when no database read is needed (a key of ORCH_API_KEYS,
    or a fresh cached answer), else None (unknown secrets are never cached)."""
    found = None
    for login, (known, role) in _parse_env(ctx.settings.api_keys).items():
        # Every entry is compared, so the time taken does not tell which one matched.
        if hmac.compare_digest(known.encode(), secret.encode()):
            found = (login, role)
    if found is not None:
        return found
    cached = _cache.get((ctx.db.url, "hash:" + hash_secret(secret)))
    return cached if isinstance(cached, tuple) else None


def role_of(ctx: KeyContext, login: str) -> str | None:
    """The role of an active key, None when ``login`` names no active key."""
    env = parse_env_roles(ctx.settings.api_keys)
    if login in env:
        return env[login]
    with ctx.db.read() as conn:
        key = key_store.get_key(conn, login)
    return key.role if key is not None and key.revoked_at is None else None


def secret_for_login(ctx: KeyContext, login: str) -> str | None:
    """The plain secret of an active key (to check a Corezoid signature)."""
    env = _env(ctx)
    if login in env:
        return env[login]
    with ctx.db.read() as conn:
        key = key_store.get_key(conn, login)
    if key is None or key.revoked_at is not None:
        return None
    return ctx.vault.decrypt(key.secret_encrypted)


def first_sighting(ctx: KeyContext, key: str, now: float, window: float) -> bool:
    """Record a signed request; False when it was seen within the last ``2 * window``."""
    with ctx.db.write() as conn:
        return key_store.first_sighting(conn, key, now, now - 2 * window)
