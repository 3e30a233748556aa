"""Checks of values in a process file: durations, and the fields several logic types
share. Each raises through ``fail``, which names file, node and field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol


class Fail(Protocol):
    """Builds the DefinitionError for a message, node and field."""

    def __call__(self, msg: str, node: str | None = None, fld: str | None = None) -> Exception: ...


class LogicFail(Protocol):
    """Builds the DefinitionError for a problem in one logic: ``fld`` is the field inside
    the logic (``"action"``, ``"if[0].fun"``), None for the logic as a whole."""

    def __call__(self, msg: str, fld: str | None = None) -> Exception: ...


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hour|d|day)?\s*\Z")
_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600}
_UNITS |= {"d": 86400, "day": 86400}


def parse_duration(value: Any) -> float | None:
    """``30``, ``"30s"``, ``"5 min"``, ``"2h"``, ``"1d"`` → seconds; None if not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    return None


def check_mapping(spec: Mapping[str, Any], key: str, fail: LogicFail) -> None:
    """An optional field that must be a mapping when given (``data``, ``params``)."""
    if spec.get(key) is not None and not isinstance(spec.get(key), Mapping):
        raise fail("must be a mapping", key)


def check_process_target(spec: Mapping[str, Any], fail: LogicFail) -> None:
    """``process`` (the process a task is created in or written to) and its ``data``."""
    if not isinstance(spec.get("process"), str):
        raise fail("must name the target process", "process")
    check_mapping(spec, "data", fail)
