"""Server secret, callback hashes and encryption of stored credentials.

Everything secret is derived from one server secret: ORCH_SECRET, or (when unset) a random
one generated on first start and kept in the database so callback URLs survive restarts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


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
