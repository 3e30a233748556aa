"""Reading JSON from the outside: standard JSON only.

Python's ``json`` accepts ``NaN``, ``Infinity`` and numbers like ``1e999`` (read as
infinity), none of which is JSON: stored in a task they would make every later answer
about it fail. They are refused where requests are read, and so is nesting deeper than
MAX_DEPTH: the parser and every recursive walk of task data (redaction, templates) would
run out of stack on it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from orchestrator.textcheck import first_surrogate

MAX_DEPTH = 100
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_depth(value: Any) -> None:
    # Iterative: a recursive walk is exactly what this protects against.
    if not isinstance(value, (dict, list)):
        return
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"arrays and objects are nested deeper than {MAX_DEPTH} levels")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def loads(raw: bytes | str) -> Any:
    """``json.loads`` that raises ValueError (json.JSONDecodeError is one) for NaN,
    Infinity, out-of-range numbers, nesting deeper than MAX_DEPTH and lone surrogates
    (``\\ud800`` escapes: no database can store them), and UnicodeDecodeError for
    non-UTF-8 bytes."""
    try:
        value = json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"arrays and objects are nested deeper than {MAX_DEPTH} levels") from None
    text = raw.encode() if isinstance(raw, str) else raw
    if text.count(b"[") + text.count(b"{") > MAX_DEPTH:  # else it cannot be too deep
        _check_depth(value)
    if _SURROGATE_ESCAPE.search(text):  # UTF-8 itself cannot carry one: only an escape can
        bad = first_surrogate(value)
        if bad:
            raise ValueError(f"a string holds {bad}, which is not text")
    return value
