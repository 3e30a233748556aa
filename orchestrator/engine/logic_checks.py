"""Checks of single logics and values in a process file (called by ``definition``): URLs,
conditions, durations. Each raises through ``fail``, which names file, node and field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from orchestrator.twilio.credentials import api_base


class Fail(Protocol):
    """Builds the DefinitionError for a message, node and field."""

    def __call__(self, msg: str, node: str | None = None, fld: str | None = None) -> Exception: ...


HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
BODY_FORMATS = ("json", "form", "raw")
CONDITION_FUNS = ("eq", "not_eq", "more", "less", "more_eq", "less_eq", "regexp")
CASTS = ("string", "number", "boolean")
CALLBACK_FORMS = ("json", "twilio", "nvp")

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


def check_api_call(nid: str, where: str, spec: Mapping[str, Any], fail: Fail) -> None:
    url = spec.get("url")
    if not isinstance(url, str) or not (url.startswith(("http://", "https://")) or "{{" in url):
        raise fail("must be an http(s) URL (a template is fine)", nid, f"{where}.url")
    if str(spec.get("method", "GET")).upper() not in HTTP_METHODS:
        raise fail(f"must be one of {', '.join(HTTP_METHODS)}", nid, f"{where}.method")
    if spec.get("format", "json") not in BODY_FORMATS:
        raise fail(f"must be one of {', '.join(BODY_FORMATS)}", nid, f"{where}.format")
    for key in ("params", "headers"):
        if not isinstance(spec.get(key, {}), Mapping):
            raise fail("must be a mapping", nid, f"{where}.{key}")
    timeout = spec.get("timeout")
    if timeout is not None and not (isinstance(timeout, str) and "{{" in timeout):
        seconds = parse_duration(timeout)
        if seconds is None or seconds <= 0:
            raise fail(
                "must be a positive duration such as 10, '30s' or '2min'", nid, f"{where}.timeout"
            )


def check_base_url(nid: str, where: str, value: Any, fail: Fail) -> None:
    """A twilio logic's ``base_url`` is the author's: a plain http(s) URL, no template (so
    task data can never point a request, and its credentials, elsewhere)."""
    if not isinstance(value, str) or "{{" in value or "{%" in value:
        raise fail("must be a plain http(s) URL, not a template", nid, where)
    try:
        api_base(value)
    except ValueError as exc:
        raise fail(str(exc), nid, where) from exc


def is_callback_ref(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("process"), str)
        and isinstance(value.get("node"), str)
        and value.get("form", "twilio") in CALLBACK_FORMS
    )


def check_conditions(nid: str, where: str, conds: Any, fail: Fail) -> None:
    if not isinstance(conds, list) or not conds:
        raise fail("must be a non-empty list of {param, fun, value, cast?}", nid, f"{where}.if")
    for j, cond in enumerate(conds):
        at = f"{where}.if[{j}]"
        if not isinstance(cond, Mapping) or not isinstance(cond.get("param"), str):
            raise fail("needs param", nid, at)
        if cond.get("fun", "eq") not in CONDITION_FUNS:
            raise fail(f"fun must be one of {', '.join(CONDITION_FUNS)}", nid, f"{at}.fun")
        if cond.get("cast", "string") not in CASTS:
            raise fail(f"cast must be one of {', '.join(CASTS)}", nid, f"{at}.cast")
        if "value" not in cond:
            raise fail("needs value", nid, f"{at}.value")
        if cond.get("fun") == "regexp":
            try:
                re.compile(str(cond["value"]))
            except re.error as exc:
                raise fail(f"bad regular expression: {exc}", nid, f"{at}.value") from exc
