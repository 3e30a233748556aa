"""Server secret, callback hashes and encryption of stored credentials.

Everything secret is derived from one server secret: ORCH_SECRET, or (when unset) a random
one generated on first start and kept in the database so callback URLs survive restarts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# Task parameters that hold credentials: kept out of task data, history and responses.
_SECRET_NAME = re.compile(
    r"(?i)(token$|api_?key_?secret|password|passwd|secret$|^secret|private_?key)"
)
REDACTED = "***"


def is_secret_param(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def split_secrets(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain data, secret parameters) — only top-level keys are considered."""
    plain = {k: v for k, v in data.items() if not is_secret_param(k)}
    hidden = {k: v for k, v in data.items() if is_secret_param(k)}
    return plain, hidden


def redact(value: Any) -> Any:
    """A copy with every secret-named key's value replaced, at any depth."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_param(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def node_hash(server_secret: str, conv_id: int, node_id: str) -> str:
    """The unguessable part of a node's callback URLs: 160 bits of HMAC-SHA256."""
    msg = f"callback:{conv_id}:{node_id}".encode()
    return hmac.new(server_secret.encode(), msg, hashlib.sha256).hexdigest()[:40]


def derived_key(server_secret: str, purpose: str) -> bytes:
    """A key for one purpose (e.g. signing console sessions), independent of the others."""
    return hmac.new(server_secret.encode(), f"key:{purpose}".encode(), hashlib.sha256).digest()


def hash_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def _fernet(server_secret: str) -> Fernet:
    key = hashlib.sha256(b"orchestrator-vault:" + server_secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


class Vault:
    """Symmetric encryption (Fernet: AES-128-CBC + HMAC) keyed from the server secret.

    ``previous`` secrets (ORCH_PREVIOUS_SECRETS) still decrypt, so ORCH_SECRET can be
    rotated: new values are encrypted under the current one, and ``orchestrator secrets
    rotate`` re-encrypts stored ones (docs/security.md)."""

    def __init__(self, server_secret: str, previous: Sequence[str] = ()) -> None:
        self._current = _fernet(server_secret)
        self._fernet = MultiFernet([self._current, *(_fernet(p) for p in previous)])

    def encrypt(self, plaintext: str) -> str:
        return self._current.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str | None:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            return None

    def is_current(self, token: str) -> bool:
        """Encrypted under the current secret (nothing to rotate)."""
        try:
            self._current.decrypt(token.encode())
        except InvalidToken:
            return False
        return True


# Secret-named fields of a callback or modification wait in the inbox under this key,
# encrypted, until they are applied to the task (which keeps them encrypted too).
SEALED = "__sealed_secrets__"


def seal(vault: Vault, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with its secret-named top-level fields replaced by one encrypted field."""
    plain, hidden = split_secrets({k: v for k, v in payload.items() if k != SEALED})
    if hidden:
        plain[SEALED] = vault.encrypt(json.dumps(hidden))
    return plain


def unseal(vault: Vault, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload ``seal`` was given (a sealed field that does not decrypt is dropped)."""
    out = dict(payload)
    token = out.pop(SEALED, None)
    if isinstance(token, str):
        hidden = vault.decrypt(token)
        if hidden is not None:
            out.update(json.loads(hidden))
    return out
