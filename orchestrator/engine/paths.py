"""Corezoid parameter paths: ``a.b`` is an object path, ``a[0]`` an array element."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MISSING: Any = object()
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def lookup(data: Mapping[str, Any], path: str) -> Any:
    if path in data:
        return data[path]
    current: Any = data
    for name, index in _PART.findall(path):
        if name:
            if not isinstance(current, Mapping) or name not in current:
                return MISSING
            current = current[name]
        else:
            i = int(index)
            if not isinstance(current, list) or i >= len(current):
                return MISSING
            current = current[i]
    return current
