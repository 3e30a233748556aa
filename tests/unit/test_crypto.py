"""Unit tests for orchestrator/crypto.py (secret parameters, callback hashes, the vault)."""

from __future__ import annotations

import base64
import copy
import re
from typing import Any

import pytest

from orchestrator.crypto import Vault, hash_matches, new_secret, node_hash
from orchestrator.secretdata import REDACTED, redact
from orchestrator.secretdata import is_secret_name as is_secret_param
from orchestrator.secretdata import split as split_secrets

SECRET_NAMES = [
    "AuthToken",
    "auth_token",
    "AUTH_TOKEN",
    "authtoken",
    "TwilioAuthToken",
    "ApiKeySecret",
    "api_key_secret",
    "apikeysecret",
    "password",
    "Password",
    "db_password",
    "passwd",
    "secret",
    "Secret",
    "client_secret",
    "secret_value",
    "private_key",
    "PrivateKey",
    "access_token",
    "AccessToken",
    "api_key",  # issue 15: common names, and headers stored as data
    "X-Api-Key",
    "Authorization",
    "proxy_authorization",
]
PLAIN_NAMES = [
    "Body",
    "Number_to",
    "Number_from",
    "sid",
    "Sid",
    "MessageSid",
    "AccountSid",
    "ApiKeySid",
    "status",
    "MessageStatus",
    "To",
    "From",
    "MediaUrl",
    "token_count",
    "key",
    "ErrorCode",
    "",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names(name: str) -> None:
    assert is_secret_param(name) is True


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_plain_names(name: str) -> None:
    assert is_secret_param(name) is False


def test_split_secrets() -> None:
    data = {
        "Body": "hi",
        "AuthToken": "tok",
        "Number_to": "+1",
        "password": "pw",
        "nested": {"AuthToken": "inner"},
    }
    plain, hidden = split_secrets(data)
    # Nested secrets too (issue 15): one rule at every depth.
    assert plain == {"Body": "hi", "Number_to": "+1", "nested": {}}
    assert hidden == {"AuthToken": "tok", "password": "pw", "nested": {"AuthToken": "inner"}}
    assert data["AuthToken"] == "tok"  # the input is left alone


def test_split_secrets_empty_and_all_plain() -> None:
    assert split_secrets({}) == ({}, {})
    assert split_secrets({"Body": "x"}) == ({"Body": "x"}, {})
    assert split_secrets({"secret": None}) == ({}, {"secret": None})


def test_redact_at_depth() -> None:
    value = {
        "Body": "hi",
        "AuthToken": "tok",
        "request": {
            "params": {"To": "+1", "ApiKeySecret": "s"},
            "list": [{"password": "pw", "ok": 1}, "plain", [{"access_token": "a"}]],
        },
        "secret": {"whole": "subtree"},
    }
    before = copy.deepcopy(value)
    assert redact(value) == {
        "Body": "hi",
        "AuthToken": REDACTED,
        "request": {
            "params": {"To": "+1", "ApiKeySecret": REDACTED},
            "list": [{"password": REDACTED, "ok": 1}, "plain", [{"access_token": REDACTED}]],
        },
        "secret": REDACTED,
    }
    assert value == before


def test_redact_scalars_and_odd_keys() -> None:
    assert REDACTED == "***"
    for scalar in ("AuthToken", 5, None, 1.5, True):
        assert redact(scalar) == scalar
    assert redact({1: "x", None: "y"}) == {1: "x", None: "y"}
    assert redact([]) == []


def test_node_hash_shape() -> None:
    value = node_hash("server-secret", 1, "waiting_for_callback")
    assert re.fullmatch(r"[0-9a-f]{40}", value)


def test_node_hash_is_stable() -> None:
    # Callback URLs must survive restarts and upgrades: pin one value.
    assert node_hash("s3cret", 7, "waiting_for_callback") == (
        "d682594c95b1b12d7a023fd45a10a974f196ad4f"
    )
    assert node_hash("a", 1, "n") == node_hash("a", 1, "n")


def test_node_hash_differs() -> None:
    base = node_hash("secret", 1, "node")
    others = {
        node_hash("secret", 1, "node2"),
        node_hash("secret", 2, "node"),
        node_hash("secret2", 1, "node"),
        node_hash("secret", 11, "node"),
        node_hash("secret", 1, "Node"),
    }
    assert base not in others
    assert len(others) == 5
    # No ambiguity between conv id and node id.
    assert node_hash("s", 1, "1:x") != node_hash("s", 11, "x")


def test_hash_matches() -> None:
    expected = node_hash("secret", 1, "node")
    assert hash_matches(expected, expected) is True
    assert hash_matches(expected, expected.upper()) is False
    assert hash_matches(expected, expected[:-1]) is False
    assert hash_matches(expected, "") is False
    assert hash_matches(expected, expected + "0") is False
    assert hash_matches(expected, "é" * 40) is False


def test_new_secret() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    assert len(first) >= 43
    assert re.fullmatch(r"[A-Za-z0-9_\-]+", first)


@pytest.mark.parametrize(
    "plaintext", ["", "tok", "AC" + "0" * 32, "ünïcödé 日本 😀", '{"AuthToken": "x"}', "x" * 10000]
)
def test_vault_round_trip(plaintext: str) -> None:
    vault = Vault("server-secret")
    token = vault.encrypt(plaintext)
    assert isinstance(token, str)
    assert vault.decrypt(token) == plaintext
    assert Vault("server-secret").decrypt(token) == plaintext  # same key from the same secret


def test_vault_ciphertext_hides_plaintext() -> None:
    plaintext = "super-secret-auth-token-value"
    token = Vault("server-secret").encrypt(plaintext)
    assert plaintext not in token
    assert plaintext.encode() not in base64.urlsafe_b64decode(token.encode())


def test_vault_encryption_is_randomised() -> None:
    vault = Vault("server-secret")
    first, second = vault.encrypt("same"), vault.encrypt("same")
    assert first != second
    assert vault.decrypt(first) == vault.decrypt(second) == "same"


def test_vault_wrong_key_returns_none() -> None:
    token = Vault("server-secret").encrypt("tok")
    assert Vault("other-secret").decrypt(token) is None
    assert Vault("server-secret ").decrypt(token) is None


@pytest.mark.parametrize("garbage", ["", "not a token", "gAAAAA", "é", "=" * 10])
def test_vault_garbage_returns_none(garbage: str) -> None:
    assert Vault("server-secret").decrypt(garbage) is None


def test_vault_tampered_token_returns_none() -> None:
    vault = Vault("server-secret")
    raw = bytearray(base64.urlsafe_b64decode(vault.encrypt("tok").encode()))
    raw[-1] ^= 1
    tampered: Any = base64.urlsafe_b64encode(bytes(raw)).decode()
    assert vault.decrypt(tampered) is None
