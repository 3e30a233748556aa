"""Server secret, callback hashes and encryption of stored credentials.

Everything secret is derived from one server secret: ORCH_SECRET, or (when unset) a random
one generated on first start and kept in the database so callback URLs survive restarts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

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


class Vault:
    """Symmetric encryption (Fernet: AES-128-CBC + HMAC) keyed from the server secret."""

    def __init__(self, server_secret: str) -> None:
        key = hashlib.sha256(b"orchestrator-vault:" + server_secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str | None:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            return None
