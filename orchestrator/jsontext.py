"""Reading JSON from the outside: standard JSON only.

Python's ``json`` accepts ``NaN``, ``Infinity`` and numbers like ``1e999`` (read as
infinity), none of which is JSON: stored in a task they would make every later answer
about it fail. They are refused where requests are read.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(raw: bytes | str) -> Any:
    """``json.loads`` that raises ValueError (json.JSONDecodeError is one) for NaN,
    Infinity and out-of-range numbers, and UnicodeDecodeError for non-UTF-8 bytes."""
    return json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
