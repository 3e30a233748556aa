"""The Twilio simulator's live settings and their checked updates (``POST /_sim/config``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .incoming import ReplyRule, coerce_reply_rules
from .rules import DEFAULT_CALL_RULES, DEFAULT_RULES, OutcomeRule


def _default_caller_ids() -> list[str]:
    return ["+15005550006", "+14155550100", "+14155550101", "+14155550102"]


@dataclass
class SimulatorConfig:
    """Live settings; the app mutates this very object (counters, ``/_sim/config``)."""

    account_sid: str = "AC" + "0" * 32
    auth_token: str = "simulator-auth-token"
    # API keys of the account: SK… sid → its own secret (the auth token is not one).
    api_keys: dict[str, str] = field(default_factory=dict)
    callback_delay: float = 0.02  # before the first callback and between callbacks
    duplicate_callbacks: bool = False  # post each callback twice, same idempotency token
    reorder_callbacks: bool = False  # post the terminal callback first
    early_callbacks: bool = False  # post the first callback before answering the create
    rate_limit_429: int = 0  # the next N creates answer 429 / 20429, Retry-After: 1
    fail_503: int = 0  # the next N creates answer 503
    # The next creates answer these [HTTP status, Twilio code] (code 0: a body without
    # one, as a proxy or load balancer would send), one each, in order.
    fail_next: list[list[int]] = field(default_factory=list)
    response_delay: float = 0.0  # sleep before answering creates (created anyway)
    lose_callbacks: bool = False  # never post status callbacks
    page_size_caller_ids: int = 50  # the default and largest OutgoingCallerIds page
    caller_ids: list[str] = field(default_factory=_default_caller_ids)
    rules: list[OutcomeRule] = field(default_factory=lambda: list(DEFAULT_RULES))
    call_rules: list[OutcomeRule] = field(default_factory=lambda: list(DEFAULT_CALL_RULES))
    callback_retry_delay: float = 0.2
    # Incoming messages (simulator/incoming.py): where they are posted, and the rules by
    # which recipients text back.
    incoming_url: str = ""
    reply_rules: list[ReplyRule] = field(default_factory=list)


def _coerce_rules(value: object) -> list[OutcomeRule]:
    if not isinstance(value, list):
        raise ValueError("rules must be a list")
    try:
        return [
            OutcomeRule(**item) if isinstance(item, dict) else OutcomeRule(*item) for item in value
        ]
    except TypeError as exc:
        raise ValueError(f"bad rule: {exc}") from exc


def apply_config(config: Any, changes: object) -> None:
    """Type-checked, all-or-nothing update from a JSON object; ValueError if invalid."""
    if not isinstance(changes, dict):
        raise ValueError("expected a JSON object")
    names = {f.name for f in fields(config)}
    updates: dict[str, object] = {}
    for name, value in changes.items():
        if name not in names:
            raise ValueError(f"unknown config field {name!r}")
        current = getattr(config, name)
        if name in ("rules", "call_rules"):
            value = _coerce_rules(value)
        elif name == "reply_rules":
            value = coerce_reply_rules(value)
        elif name == "fail_next":
            if not (
                isinstance(value, list)
                and all(
                    isinstance(v, list) and len(v) == 2 and all(isinstance(i, int) for i in v)
                    for v in value
                )
            ):
                raise ValueError("fail_next must be a list of [status, code] pairs")
        elif name == "api_keys":
            if not (
                isinstance(value, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
            ):
                raise ValueError("api_keys must map SK… sids to secrets")
        elif name == "caller_ids":
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise ValueError("caller_ids must be a list of strings")
        elif isinstance(current, bool) or isinstance(value, bool):
            if type(value) is not type(current):
                raise ValueError(f"{name} must be {type(current).__name__}")
        elif isinstance(current, float) and isinstance(value, int | float):
            value = float(value)
        elif type(value) is not type(current):
            raise ValueError(f"{name} must be {type(current).__name__}")
        updates[name] = value
    for name, value in updates.items():
        setattr(config, name, value)
