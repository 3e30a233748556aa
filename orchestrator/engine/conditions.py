"""The ``condition`` logic's comparisons (Corezoid's go_if_const), pure and DB-free."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from orchestrator.engine.paths import MISSING, lookup

# The comparisons and casts a condition may name.
CONDITION_FUNS = ("eq", "not_eq", "more", "less", "more_eq", "less_eq", "regexp")
CASTS = ("string", "number", "boolean")


def _cast(value: Any, cast: str) -> Any:
    if cast == "number":
        if isinstance(value, bool):
            raise ValueError("boolean is not a number")
        return float(value)
    if cast == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def matches(cond: Mapping[str, Any], data: Mapping[str, Any]) -> bool:
    """One comparison; a missing key or a value that cannot be cast fails it."""
    actual = lookup(data, cond["param"])
    if actual is MISSING or actual is None:
        return False
    fun = cond.get("fun", "eq")
    cast = cond.get("cast", "string")
    if fun == "regexp":
        return re.search(str(cond["value"]), _cast(actual, "string")) is not None
    try:
        left, right = _cast(actual, cast), _cast(cond["value"], cast)
    except (TypeError, ValueError):
        return False
    if fun == "eq":
        return bool(left == right)
    if fun == "not_eq":
        return bool(left != right)
    if cast == "boolean":
        return False  # ordering booleans means nothing
    try:
        if fun == "more":
            return bool(left > right)
        if fun == "less":
            return bool(left < right)
        if fun == "more_eq":
            return bool(left >= right)
        if fun == "less_eq":
            return bool(left <= right)
    except TypeError:
        return False
    return False


def all_match(conds: list[Mapping[str, Any]], data: Mapping[str, Any]) -> bool:
    return all(matches(c, data) for c in conds)
