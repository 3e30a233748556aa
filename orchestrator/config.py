"""Settings read from the environment (SPEC §7 "Configuration")."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from orchestrator.engine.destinations import Allowlist


class ConfigError(ValueError):
    """An environment variable the operator set cannot be used; the message names it."""


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None


def _base_url(name: str, default: str) -> str:
    raw = os.environ.get(name) or default
    # Callback URLs and signature checks are built on it: a bare host would give Twilio
    # StatusCallbacks it refuses, far from the cause.
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http:// or https:// URL, not {raw!r}")
    return raw.rstrip("/")


def _aliased(name: str, alias: str) -> str | None:
    """``name``, or its alias (seed 004's connector names the credentials TWILIO_ACCOUNT and
    TWILIO_TOKEN); both set to different values is a mistake worth naming."""
    value, other = os.environ.get(name) or None, os.environ.get(alias) or None
    if value and other and value != other:
        raise ConfigError(f"{name} and {alias} are both set, to different values")
    return value or other


# Where serve keeps the callback base it derived from --host/--port (settings table), so
# that `worker` and `process show` use the URL the running server really has.
BOUND_URL_KEY = "bound_public_url"
EVERY_INTERFACE = ("", "0.0.0.0", "::", "[::]")


def bound_public_url(host: str, port: int) -> str:
    """The callback base when ORCH_PUBLIC_URL is unset: the address serve listens on."""
    if host in EVERY_INTERFACE or port == 0:
        shown = host or "''"
        raise ConfigError(
            f"serve --host {shown} --port {port} gives no address Twilio can call back: "
            "set ORCH_PUBLIC_URL to the URL that reaches this server"
        )
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _rate_limits() -> str | None:
    spec = os.environ.get("ORCH_TWILIO_RATE_LIMITS") or None
    parse_rates(spec)  # refused at start, not at the first send
    return spec


def parse_rates(spec: str | None) -> dict[str, float]:
    """``"+15005550006=1, MG…=10"`` → {sender: messages per second}."""
    rates: dict[str, float] = {}
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        sender, sep, value = item.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if not sep or not sender.strip() or rate < 0:
            raise ConfigError(f"ORCH_TWILIO_RATE_LIMITS: {item.strip()!r} is not sender=rate")
        rates[sender.strip()] = rate
    return rates


def _api_call_allow() -> str | None:
    spec = os.environ.get("ORCH_API_CALL_ALLOW") or None
    try:
        Allowlist.parse(spec)  # refused at start, not at the first call
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return spec


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///./orchestrator.db"
    public_url: str = "http://127.0.0.1:8000"
    # False when ORCH_PUBLIC_URL is unset and public_url is only the default.
    public_url_configured: bool = False
    secret: str | None = None
    twilio_api_url: str = "https://api.twilio.com"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = field(default=None, repr=False)
    twilio_api_key: str | None = None
    twilio_api_secret: str | None = field(default=None, repr=False)
    api_keys: str | None = field(default=None, repr=False)
    # Outbound messages per second per sender: "+15005550006=1,MG…=10"; others get the
    # default (0: unlimited). Held across every worker (a slot row per sender).
    twilio_rate_limits: str | None = None
    twilio_default_rate: float = 0.0
    # A message with no final status this long after it was sent is fetched from Twilio
    # (0: never); the sweep looks every reconcile_interval seconds, reconcile_batch at a time.
    reconcile_after: float = 3600.0
    reconcile_interval: float = 60.0
    reconcile_batch: int = 100
    # Callbacks Twilio sent while no server was up are gone: this long after a start,
    # messages still waiting from before it are fetched (0: only after reconcile_after).
    reconcile_after_restart: float = 30.0
    # Quotas against a process that creates tasks without end (engine/quotas.py): how
    # deep a chain of created tasks may go, and how many tasks one chain may hold.
    max_task_depth: int = 32
    max_chain_tasks: int = 10000
    # Request bodies above this are refused with 413 before they are parsed.
    max_request_bytes: int = 256 * 1024
    max_task_bytes: int = 128 * 1024
    # Slow clients: seconds for a request's headers, then for its body (408 after), and
    # how long an idle keep-alive connection stays open.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: int = 5
    # How long the Twilio client waits for an answer before the outcome counts as unknown.
    twilio_timeout: float = 10.0
    # Requests per Twilio call when answers are 429/20429, 503 or connects fail.
    twilio_max_attempts: int = 4
    # A lease on a claimed task; a worker that dies mid-step loses it after this long.
    lease_seconds: float = 30.0
    # Upper bound on an idle worker's sleep when nothing wakes it.
    poll_interval: float = 0.5
    engine_concurrency: int = 256
    db_pool_size: int = 10
    # At most this many database jobs share one COMMIT (group commit); 0 or 1 gives each
    # its own transaction.
    group_commit: int = 64
    # PostgreSQL: batches in flight at once (each a thread and a pooled connection).
    group_commit_batches: int = 2
    # ...and under load, batches are at least this many seconds apart (fewer, larger ones).
    group_commit_spacing: float = 0.008
    # SQLite: past this many bytes the WAL is emptied (TRUNCATE checkpoint).
    sqlite_wal_limit: int = 32 * 1024 * 1024
    # Finished tasks (and their history) are purged after this many days; 0 keeps them.
    retention_days: float = 30.0
    # A Corezoid API request whose signed time is further than this from ours is refused
    # (and one seen before within it is a replay).
    corezoid_time_window: float = 300.0
    # Earlier server secrets, still accepted to decrypt stored tokens and match callback
    # hashes while ORCH_SECRET is rotated (see docs/security.md).
    previous_secrets: tuple[str, ...] = field(default=(), repr=False)
    # Callbacks that found no task are deleted after this many seconds, and beyond this
    # many the oldest go at once (0: no limit of that kind).
    orphan_callback_ttl: float = 3600.0
    orphan_callback_max: int = 10_000
    # Non-public destinations api_call may reach anyway: "10.0.0.0/8,billing.internal".
    api_call_allow: str | None = None

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": os.environ.get("ORCH_DATABASE_URL") or cls.database_url,
            "public_url": _base_url("ORCH_PUBLIC_URL", cls.public_url),
            "public_url_configured": bool(os.environ.get("ORCH_PUBLIC_URL")),
            "secret": os.environ.get("ORCH_SECRET") or None,
            "twilio_api_url": _base_url("ORCH_TWILIO_API_URL", cls.twilio_api_url),
            "twilio_account_sid": _aliased("TWILIO_ACCOUNT_SID", "TWILIO_ACCOUNT"),
            "twilio_auth_token": _aliased("TWILIO_AUTH_TOKEN", "TWILIO_TOKEN"),
            "twilio_api_key": os.environ.get("TWILIO_API_KEY") or None,
            "twilio_api_secret": os.environ.get("TWILIO_API_SECRET") or None,
            "api_keys": os.environ.get("ORCH_API_KEYS") or None,
            "twilio_rate_limits": _rate_limits(),
            "twilio_default_rate": _float("ORCH_TWILIO_DEFAULT_RATE", cls.twilio_default_rate),
            "reconcile_after": _float("ORCH_RECONCILE_AFTER", cls.reconcile_after),
            "reconcile_interval": _float("ORCH_RECONCILE_INTERVAL", cls.reconcile_interval),
            "reconcile_batch": _int("ORCH_RECONCILE_BATCH", cls.reconcile_batch),
            "reconcile_after_restart": _float(
                "ORCH_RECONCILE_AFTER_RESTART", cls.reconcile_after_restart
            ),
            "max_task_depth": _int("ORCH_MAX_TASK_DEPTH", cls.max_task_depth),
            "max_chain_tasks": _int("ORCH_MAX_CHAIN_TASKS", cls.max_chain_tasks),
            "max_request_bytes": _int("ORCH_MAX_REQUEST_BYTES", cls.max_request_bytes),
            "header_timeout": _float("ORCH_HEADER_TIMEOUT", cls.header_timeout),
            "body_timeout": _float("ORCH_BODY_TIMEOUT", cls.body_timeout),
            "keep_alive_timeout": _int("ORCH_KEEP_ALIVE_TIMEOUT", cls.keep_alive_timeout),
            "twilio_timeout": _float("ORCH_TWILIO_TIMEOUT", cls.twilio_timeout),
            "twilio_max_attempts": _int("ORCH_TWILIO_MAX_ATTEMPTS", cls.twilio_max_attempts),
            "lease_seconds": _float("ORCH_LEASE_SECONDS", cls.lease_seconds),
            "poll_interval": _float("ORCH_POLL_INTERVAL", cls.poll_interval),
            "engine_concurrency": _int("ORCH_ENGINE_CONCURRENCY", cls.engine_concurrency),
            "db_pool_size": _int("ORCH_DB_POOL_SIZE", cls.db_pool_size),
            "group_commit": _int("ORCH_GROUP_COMMIT", cls.group_commit),
            "group_commit_spacing": _float("ORCH_GROUP_COMMIT_SPACING", cls.group_commit_spacing),
            "group_commit_batches": _int("ORCH_GROUP_COMMIT_BATCHES", cls.group_commit_batches),
            "sqlite_wal_limit": _int("ORCH_SQLITE_WAL_LIMIT", cls.sqlite_wal_limit),
            "retention_days": _float("ORCH_RETENTION_DAYS", cls.retention_days),
            "corezoid_time_window": _float("ORCH_COREZOID_TIME_WINDOW", cls.corezoid_time_window),
            "api_call_allow": _api_call_allow(),
            "orphan_callback_ttl": _float("ORCH_ORPHAN_CALLBACK_TTL", cls.orphan_callback_ttl),
            "orphan_callback_max": _int("ORCH_ORPHAN_CALLBACK_MAX", cls.orphan_callback_max),
            "previous_secrets": tuple(
                s for s in (os.environ.get("ORCH_PREVIOUS_SECRETS") or "").split(",") if s
            ),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
