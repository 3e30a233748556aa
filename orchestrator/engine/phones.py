"""Phone numbers as people type them, normalised to E.164 (``+15551230001``).

``+1 555 123 0001``, ``+1 (555) 123-0001`` and ``+1.555.123.0001`` all become
``+15551230001``. Only a number written with ``+`` and its country code is normalised:
``(555) 123-0001`` names no country, so it is left as typed and the ``twilio`` logic
refuses it (``INVALID_INPUT``), as it refuses anything else that is not a number.
Process inputs declared ``type: phone`` are normalised when a task is created (API,
console, CLI, Corezoid); the ``twilio`` logic normalises ``To``/``From`` again for
numbers that come from elsewhere.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

import phonenumbers

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}\Z")  # ASCII only: \d also takes other scripts' digits
# What people put between digits: spaces (also non-breaking), dashes, dots, parentheses.
_TYPED = re.compile(r"^\+[0-9 \u00a0\-.()/]{2,40}\Z")
_LIST_SEPARATORS = re.compile(r"[,;]")


def e164(value: str) -> str | None:
    """``value`` as E.164, or None when it is not a possible number with a country code."""
    text = value.strip()
    if not _TYPED.match(text):
        return None
    return _parsed(text)


# phonenumbers' parse is slow (some 2% of a server's CPU per SMS round trip) and pure, and
# the same few numbers come again and again. Keys are short: _TYPED allows 41 characters.
@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> str | None:
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return formatted if _E164.match(formatted) else None


def normalised(value: Any) -> Any:
    """A typed number (or a list, or a comma-separated string of them) in E.164; anything
    that cannot be normalised is returned as it was, for the logic to refuse by name."""
    if isinstance(value, str):
        if "," in value or ";" in value:
            parts = [p.strip() for p in _LIST_SEPARATORS.split(value) if p.strip()]
            return ",".join(e164(p) or p for p in parts)
        return e164(value) or value
    if isinstance(value, list):
        return [normalised(v) if isinstance(v, str) else v for v in value]
    return value


def normalise_inputs(inputs: Iterable[Mapping[str, Any]], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with every input declared ``type: phone`` normalised."""
    names = [str(i["name"]) for i in inputs if i.get("type") == "phone"]
    if not any(name in data for name in names):
        return data
    return {k: (normalised(v) if k in names else v) for k, v in data.items()}
