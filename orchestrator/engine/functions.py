"""The functions templates may call (Corezoid's ``$.unixtime()``, ``$.sha1_hex()``, …).

Each is also a filter of the same name: ``{{ sha1(Body) }}`` is ``{{ Body | sha1 }}``.
They take and give plain values only, and none can reach the engine or the host.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import math
import time
import uuid
from typing import Any
from urllib.parse import quote


class FunctionError(ValueError):
    """A function was given a value it cannot work on (a template error, not a crash)."""


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"true" if value else b"false"
    return str(value).encode("utf-8")


def unixtime(offset: Any = 0) -> int:
    """Now, in Unix seconds, plus ``offset`` seconds."""
    return int(time.time() + _number(offset))


def unixtime_ms() -> int:
    return int(time.time() * 1000)


def iso_time(seconds: Any = None) -> str:
    """A Unix time (default: now) as ISO 8601 in UTC."""
    when = time.time() if seconds is None else _number(seconds)
    return dt.datetime.fromtimestamp(when, dt.UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: Any) -> int:
    """ISO 8601 text (``2026-01-02T03:04:05Z``) → Unix seconds."""
    try:
        parsed = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError as exc:
        raise FunctionError(f"{text!r} is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp())


# Checksums and signatures for APIs, not password hashing: sha1 and md5 are what many
# APIs ask for.
def sha1(value: Any) -> str:
    return hashlib.sha1(_bytes(value)).hexdigest()


def sha256(value: Any) -> str:
    return hashlib.sha256(_bytes(value)).hexdigest()


def md5(value: Any) -> str:
    return hashlib.md5(_bytes(value)).hexdigest()


def hmac_sha256(key: Any, value: Any) -> str:
    return hmac.new(_bytes(key), _bytes(value), hashlib.sha256).hexdigest()


def hmac_sha1(key: Any, value: Any) -> str:
    return hmac.new(_bytes(key), _bytes(value), hashlib.sha1).hexdigest()


def base64_encode(value: Any) -> str:
    return base64.b64encode(_bytes(value)).decode("ascii")


def base64_decode(value: Any) -> str:
    try:
        return base64.b64decode(_bytes(value), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise FunctionError("not base64 of UTF-8 text") from exc


def url_encode(value: Any) -> str:
    return quote(str(value), safe="")


def new_uuid() -> str:
    return str(uuid.uuid4())


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise FunctionError("a boolean is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise FunctionError(f"{value!r} is not a number") from exc
    if math.isnan(number) or math.isinf(number):
        raise FunctionError(f"{value!r} is not a finite number")
    return number


def number(value: Any) -> int | float:
    """Text or a number → an int when whole, else a float."""
    n = _number(value)
    return int(n) if n.is_integer() and abs(n) < 2**53 else n


FUNCTIONS: dict[str, Any] = {
    "unixtime": unixtime,
    "unixtime_ms": unixtime_ms,
    "iso_time": iso_time,
    "parse_time": parse_time,
    "sha1": sha1,
    "sha256": sha256,
    "md5": md5,
    "hmac_sha1": hmac_sha1,
    "hmac_sha256": hmac_sha256,
    "base64_encode": base64_encode,
    "base64_decode": base64_decode,
    "url_encode": url_encode,
    "uuid": new_uuid,
    "number": number,
}
# Filters: those that transform one value.
FILTERS = {
    k: FUNCTIONS[k]
    for k in ("iso_time", "parse_time", "sha1", "sha256", "md5", "base64_encode")
    + ("base64_decode", "url_encode", "number")
}
