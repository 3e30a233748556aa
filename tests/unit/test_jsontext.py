"""Reading JSON from outside: what Python's json accepts but must not reach a task."""

from __future__ import annotations

import pytest

from orchestrator import jsontext


def test_nesting_is_bounded_without_recursion() -> None:
    ok = b"[" * jsontext.MAX_DEPTH + b"]" * jsontext.MAX_DEPTH
    assert jsontext.loads(ok) is not None
    # Brackets inside strings are text, not nesting.
    assert jsontext.loads('{"a": "' + "[" * 500 + '"}')["a"] == "[" * 500
    # One level too many, deep enough to pass the parser but not a recursive walk, and
    # deep enough to exhaust the parser itself.
    for depth in (jsontext.MAX_DEPTH + 1, 900, 50_000):
        with pytest.raises(ValueError, match="nested deeper than 100 levels"):
            jsontext.loads(b'{"a": ' + b"[" * depth + b"]" * depth + b"}")


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "1e999"])
def test_numbers_json_has_not_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        jsontext.loads(text)
