"""X-Twilio-Signature: HMAC-SHA1 over the public URL plus the sorted form parameters.

Computed exactly as twilio-python's ``RequestValidator`` does (tests cross-check it), so a
callback Twilio signed for ``https://host:443/x`` also validates as ``https://host/x``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

SIGNATURE_HEADER = "X-Twilio-Signature"

FormParams = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]]


def _pairs(params: FormParams) -> dict[str, set[str]]:
    grouped: dict[str, set[str]] = {}
    items: Iterable[tuple[str, str | Sequence[str]]]
    items = params.items() if isinstance(params, Mapping) else params
    for name, value in items:
        values = [value] if isinstance(value, str) else list(value)
        grouped.setdefault(name, set()).update(values)
    return grouped


def compute_signature(url: str, params: FormParams, auth_token: str) -> str:
    """Base64 HMAC-SHA1 of ``url`` followed by every ``name+value``, sorted (Unix order)."""
    payload = url
    grouped = _pairs(params)
    for name in sorted(grouped):
        for value in sorted(grouped[name]):
            payload += name + value
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _url_variants(url: str) -> list[str]:
    """The URL as given (without fragment), with the default port added and removed."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    default_port = 443 if parts.scheme == "https" else 80
    port = parts.port or default_port
    with_port = urlunsplit((parts.scheme, f"{host}:{port}", parts.path, parts.query, ""))
    without_port = urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    variants = [base]
    for candidate in (with_port, without_port):
        if candidate not in variants:
            variants.append(candidate)
    return variants


def validate_signature(url: str, params: FormParams, signature: str, auth_token: str) -> bool:
    """True when ``signature`` matches; compared in constant time."""
    if not signature or not auth_token:
        return False
    expected = signature.encode()
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    return any(
        hmac.compare_digest(compute_signature(variant, pairs, auth_token).encode(), expected)
        for variant in _url_variants(url)
    )
