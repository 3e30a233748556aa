"""Unit tests for orchestrator/twilio/signature.py, cross-checked against twilio-python."""

from __future__ import annotations

import random
import string
from collections.abc import Iterable
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from orchestrator.twilio.signature import (
    SIGNATURE_HEADER,
    compute_signature,
    validate_signature,
)

DOC_TOKEN = "12345"
DOC_URL = "https://example.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675310",
    "Digits": "1234",
    "From": "+14158675310",
    "To": "+18005551212",
}
DOC_SIGNATURE = "L/OH5YylLD5NRKLltdqwSvS0BnU="


class MultiDict:
    """Just enough of a multi-valued form for RequestValidator (it calls getall)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._pairs = list(pairs)

    def __iter__(self) -> Any:
        return iter([name for name, _ in self._pairs])

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def getall(self, name: str) -> list[str]:
        return [v for n, v in self._pairs if n == name]


def test_header_name() -> None:
    assert SIGNATURE_HEADER == "X-Twilio-Signature"


def test_twilio_doc_vector() -> None:
    assert compute_signature(DOC_URL, DOC_PARAMS, DOC_TOKEN) == DOC_SIGNATURE
    assert validate_signature(DOC_URL, DOC_PARAMS, DOC_SIGNATURE, DOC_TOKEN) is True
    assert RequestValidator(DOC_TOKEN).compute_signature(DOC_URL, DOC_PARAMS) == DOC_SIGNATURE


def test_param_forms_are_equivalent() -> None:
    pairs = list(DOC_PARAMS.items())
    shuffled = pairs[::-1]
    listed = {k: [v] for k, v in DOC_PARAMS.items()}
    for params in (pairs, shuffled, listed, iter(pairs), tuple(pairs)):
        assert compute_signature(DOC_URL, params, DOC_TOKEN) == DOC_SIGNATURE  # type: ignore[arg-type]


def test_no_params_signs_the_url_alone() -> None:
    expected = RequestValidator("tok").compute_signature("https://h/x", {})
    assert compute_signature("https://h/x", {}, "tok") == expected
    assert compute_signature("https://h/x", [], "tok") == expected


def test_repeated_keys() -> None:
    pairs = [("MediaUrl", "b"), ("MediaUrl", "a"), ("Body", "x"), ("MediaUrl", "a")]
    ours = compute_signature("https://h/x", pairs, "tok")
    assert ours == compute_signature("https://h/x", {"MediaUrl": ["a", "b"], "Body": "x"}, "tok")
    assert ours == RequestValidator("tok").compute_signature("https://h/x", MultiDict(pairs))
    # Values are sorted within a key and duplicates collapse, as twilio-python does.
    assert ours != compute_signature("https://h/x", [("MediaUrl", "a"), ("Body", "x")], "tok")


def test_sorting_is_by_code_point() -> None:
    # Upper case sorts before lower case ("Unix order"), so "To" comes before "body".
    params = {"body": "1", "To": "2", "_x": "3", "a": "4"}
    expected = RequestValidator("tok").compute_signature("https://h/", params)
    assert compute_signature("https://h/", params, "tok") == expected


# --------------------------------------------------------------------------- random cross-check

ALPHABET = string.ascii_letters + string.digits + "+-_.:/?&=% " + "éüñ日本€😀\u00a0"


def rand_text(rng: random.Random, lo: int = 0, hi: int = 12) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(lo, hi)))


def rand_pairs(rng: random.Random) -> list[tuple[str, str]]:
    names = [rand_text(rng, 1, 8) for _ in range(rng.randint(1, 5))]
    pairs = [(rng.choice(names), rand_text(rng)) for _ in range(rng.randint(0, 10))]
    if pairs and rng.random() < 0.3:
        pairs.append(pairs[0])  # an exact duplicate
    if rng.random() < 0.3:
        pairs.append((rng.choice(names), ""))  # an empty value
    return pairs


def rand_url(rng: random.Random) -> str:
    scheme = rng.choice(["http", "https"])
    host = rng.choice(["example.com", "api.example.org", "127.0.0.1", "localhost"])
    port = rng.choice(["", "", ":443", ":80", ":8443", ":5000"])
    path = "/" + "/".join(rand_text(rng, 1, 6).replace("?", "").replace("#", "") for _ in range(2))
    query = rng.choice(["", "?a=1", "?a=1&b=%20x", "?sig=" + rand_text(rng, 1, 5).replace("#", "")])
    return f"{scheme}://{host}{port}{path}{query}"


def test_compute_signature_matches_twilio_python() -> None:
    rng = random.Random(1234)
    for _ in range(500):
        token = rand_text(rng, 1, 32)
        url = rand_url(rng)
        pairs = rand_pairs(rng)
        theirs = RequestValidator(token).compute_signature(url, MultiDict(pairs))
        assert compute_signature(url, pairs, token) == theirs, (url, pairs, token)
        single = dict(pairs)  # plain mapping, one value per key
        theirs_single = RequestValidator(token).compute_signature(url, single)
        assert compute_signature(url, single, token) == theirs_single


def test_validate_agrees_with_twilio_python() -> None:
    rng = random.Random(99)
    outcomes = set()
    for _ in range(400):
        token = rand_text(rng, 1, 32)
        url = rand_url(rng)
        params = dict(rand_pairs(rng))
        validator = RequestValidator(token)
        signed_url = rng.choice([url, _add_default_port(url), _strip_port(url)])
        choice = rng.random()
        if choice < 0.6:
            signature = validator.compute_signature(signed_url, params)
        elif choice < 0.8:
            signature = RequestValidator(token + "x").compute_signature(signed_url, params)
        else:
            tampered = {**params, "extra": "1"}
            signature = validator.compute_signature(signed_url, tampered)
        ours = validate_signature(url, params, signature, token)
        assert ours == validator.validate(url, params, signature), (url, signed_url, params)
        outcomes.add(ours)
    assert outcomes == {True, False}


def _add_default_port(url: str) -> str:
    scheme, rest = url.split("://", 1)
    host, sep, tail = rest.partition("/")
    if ":" in host:
        return url
    return f"{scheme}://{host}:{443 if scheme == 'https' else 80}{sep}{tail}"


def _strip_port(url: str) -> str:
    scheme, rest = url.split("://", 1)
    host, sep, tail = rest.partition("/")
    return f"{scheme}://{host.split(':')[0]}{sep}{tail}"


# --------------------------------------------------------------------------- validate_signature

TOKEN = "secret-token"
PARAMS = {"MessageSid": "SM123", "MessageStatus": "delivered", "To": "+14155550100"}


def sign(url: str, params: Any = PARAMS, token: str = TOKEN) -> str:
    return compute_signature(url, params, token)


@pytest.mark.parametrize(
    ("signed", "received"),
    [
        ("https://example.com/cb/x", "https://example.com:443/cb/x"),
        ("https://example.com:443/cb/x", "https://example.com/cb/x"),
        ("http://example.com/cb/x", "http://example.com:80/cb/x"),
        ("http://example.com:80/cb/x", "http://example.com/cb/x"),
        ("https://example.com/cb/x?a=1", "https://example.com:443/cb/x?a=1"),
        ("https://example.com:443/cb?a=1", "https://example.com/cb?a=1"),
        ("https://example.com:8443/cb", "https://example.com:8443/cb"),
        ("https://example.com/cb", "https://example.com:8443/cb"),  # as twilio-python
        ("https://example.com/cb", "https://example.com/cb"),
    ],
)
def test_default_port_both_directions(signed: str, received: str) -> None:
    signature = sign(signed)
    assert validate_signature(received, PARAMS, signature, TOKEN) is True
    assert RequestValidator(TOKEN).validate(received, PARAMS, signature) is True


@pytest.mark.parametrize(
    ("signed", "received"),
    [
        ("https://example.com:80/cb", "https://example.com/cb"),  # not the https default
        ("http://example.com:443/cb", "http://example.com/cb"),
        ("https://example.com:8443/cb", "https://example.com:9443/cb"),
        ("https://example.com/cb", "http://example.com/cb"),
        ("https://example.com/cb", "https://example.com/cb/"),
        ("https://example.com/cb?a=1", "https://example.com/cb?a=2"),
        ("https://example.com/cb?a=1", "https://example.com/cb"),
        ("https://example.com/cb", "https://other.example.com/cb"),
    ],
)
def test_different_url_rejected(signed: str, received: str) -> None:
    assert validate_signature(received, PARAMS, sign(signed), TOKEN) is False


def test_fragment_is_ignored() -> None:
    signature = sign("https://example.com/cb?a=1")
    assert validate_signature("https://example.com/cb?a=1#frag", PARAMS, signature, TOKEN)
    assert validate_signature("https://example.com:443/cb?a=1#x", PARAMS, signature, TOKEN)
    assert validate_signature("https://example.com/cb?a=1#", PARAMS, signature, TOKEN)


def test_wrong_token_rejected() -> None:
    url = "https://example.com/cb"
    assert validate_signature(url, PARAMS, sign(url), "other-token") is False
    assert validate_signature(url, PARAMS, sign(url, token="other"), TOKEN) is False


@pytest.mark.parametrize(
    "params",
    [
        {**PARAMS, "MessageStatus": "failed"},
        {**PARAMS, "Extra": "1"},
        {k: v for k, v in PARAMS.items() if k != "To"},
        {**PARAMS, "To": PARAMS["To"] + " "},
        {},
        [*PARAMS.items(), ("MessageStatus", "failed")],
    ],
)
def test_tampered_params_rejected(params: Any) -> None:
    url = "https://example.com/cb"
    assert validate_signature(url, params, sign(url), TOKEN) is False


@pytest.mark.parametrize("signature", ["", "x", "L/OH5YylLD5NRKLltdqwSvS0BnU", "é"])
def test_bad_signature_rejected(signature: str) -> None:
    assert validate_signature("https://example.com/cb", PARAMS, signature, TOKEN) is False


def test_signature_is_case_sensitive() -> None:
    url = "https://example.com/cb"
    signature = sign(url)
    assert validate_signature(url, PARAMS, signature.swapcase(), TOKEN) is False


def test_empty_token_rejected() -> None:
    url = "https://example.com/cb"
    assert validate_signature(url, PARAMS, sign(url, token=""), "") is False


def test_validate_accepts_pairs_and_iterators() -> None:
    url = "https://example.com/cb"
    signature = sign(url)
    assert validate_signature(url, list(PARAMS.items()), signature, TOKEN) is True
    # A one-shot iterator is read once, then checked against every URL variant.
    assert validate_signature("https://example.com:443/cb", iter(PARAMS.items()), signature, TOKEN)
    assert validate_signature("https://example.com/cb", iter(PARAMS.items()), signature, TOKEN)


def test_ipv6_host() -> None:
    signed = "https://[::1]/cb"
    signature = sign(signed)
    assert validate_signature("https://[::1]:443/cb", PARAMS, signature, TOKEN) is True
    assert validate_signature("https://[::1]/cb", PARAMS, signature, TOKEN) is True
