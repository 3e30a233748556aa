"""The one rule for secret-named data, applied wherever data is stored.

A key is secret when its name says so (``is_secret_name``): ``AuthToken``,
``ApiKeySecret``, ``access_token``, ``api_key``, ``Authorization``, ``password``, … at any
depth of a JSON object. Every path that stores data takes those values out first
(``split``): task inputs, ``api_call`` answers and every step's data, effects' results,
callbacks and modifications (``seal``), Corezoid ops (through the same service). Taken-out
values are kept only encrypted (the task's ``secrets`` column, or one sealed field of an
inbox row or effect result) so templates can still use them; answers, history and logs
show ``redact``'s ``***``. A secret inside a list is dropped: a list has no stable place
to put it back.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Protocol

_SECRET_NAME = re.compile(
    r"(?i)(token$|secret|password|passwd|private[-_]?key|api[-_]?key$|authorization"
    r"|credentials?$|cookie|^auth$)"
)
REDACTED = "***"
# Secret-named fields of a callback, modification or effect result wait in storage under
# this key, encrypted, until they are applied to the task (which keeps them encrypted too).
SEALED = "__sealed_secrets__"


class Cipher(Protocol):
    def encrypt(self, plaintext: str) -> str: ...

    def decrypt(self, token: str) -> str | None: ...


@lru_cache(maxsize=4096)  # the same few names, on every step
def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def split(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain data, secret values) at any depth: ``hidden`` mirrors the objects the
    secrets sat in, so ``merge(hidden, plain)`` gives ``data`` back (less secrets in lists)."""
    plain: dict[str, Any] = {}
    hidden: dict[str, Any] = {}
    for key, value in data.items():
        if is_secret_name(str(key)):
            hidden[key] = value
        elif isinstance(value, dict):
            inner, secret = split(value)
            plain[key] = inner
            if secret:
                hidden[key] = secret
        elif isinstance(value, list):
            plain[key] = _drop(value)
        else:
            plain[key] = value
    return plain, hidden


def _drop(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop(v) for k, v in value.items() if not is_secret_name(str(k))}
    if isinstance(value, list):
        return [_drop(v) for v in value]
    return value


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``, objects merged key by key at any depth."""
    out = dict(base)
    for key, value in extra.items():
        current = out.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            out[key] = merge(current, value)
        else:
            out[key] = value
    return out


def redact(value: Any) -> Any:
    """A copy with every secret-named key's value replaced, at any depth."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_name(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def seal(cipher: Cipher, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with its secret-named fields (any depth) replaced by one encrypted field."""
    plain, hidden = split({k: v for k, v in payload.items() if k != SEALED})
    if hidden:
        plain[SEALED] = cipher.encrypt(json.dumps(hidden))
    return plain


def unseal(cipher: Cipher, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload ``seal`` was given (a sealed field that does not decrypt is dropped)."""
    out = dict(payload)
    token = out.pop(SEALED, None)
    if isinstance(token, str):
        hidden = cipher.decrypt(token)
        if hidden is not None:
            loaded = json.loads(hidden)
            if isinstance(loaded, dict):
                return merge(out, loaded)
    return out


def opened(cipher: Cipher, stored: str | None) -> dict[str, Any]:
    """A task's decrypted ``secrets`` column ({} when empty or unreadable)."""
    if not stored:
        return {}
    text = cipher.decrypt(stored)
    loaded = json.loads(text) if text else {}
    return loaded if isinstance(loaded, dict) else {}


def closed(cipher: Cipher, stored: str | None, hidden: dict[str, Any]) -> str | None:
    """A task's ``secrets`` column with ``hidden`` merged in (unchanged when empty)."""
    if not hidden:
        return stored
    return cipher.encrypt(json.dumps(merge(opened(cipher, stored), hidden)))
