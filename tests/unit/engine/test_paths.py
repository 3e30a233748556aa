"""Unit tests for orchestrator/engine/paths.py (Corezoid parameter paths)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.engine.paths import MISSING, lookup

DATA: dict[str, Any] = {
    "a": {"b": [{"c": 1}, {"c": 2, "d": [10, 20]}], "x": None, "zero": 0, "empty": ""},
    "list": [["m0", "m1"], ["n0"]],
    "top": "value",
    "a.literal": "dotted key",
    "s": "text",
    "n": 5,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("top", "value"),
        ("a.x", None),
        ("a.zero", 0),
        ("a.empty", ""),
        ("a.b[0]", {"c": 1}),
        ("a.b[0].c", 1),
        ("a.b[1].c", 2),
        ("a.b[1].d[1]", 20),
        ("list[0]", ["m0", "m1"]),
        ("list[0][1]", "m1"),
        ("list[1][0]", "n0"),
        ("a.literal", "dotted key"),
        ("a", DATA["a"]),
    ],
)
def test_lookup(path: str, expected: Any) -> None:
    assert lookup(DATA, path) == expected


def test_lookup_returns_the_object_itself() -> None:
    assert lookup(DATA, "a.b") is DATA["a"]["b"]


def test_literal_key_with_dot_wins() -> None:
    data = {"a.b": "literal", "a": {"b": "nested"}}
    assert lookup(data, "a.b") == "literal"
    assert lookup({"a": {"b": "nested"}}, "a.b") == "nested"


def test_literal_key_with_brackets() -> None:
    assert lookup({"items[0]": "literal", "items": ["nested"]}, "items[0]") == "literal"


@pytest.mark.parametrize(
    "path",
    [
        "nope",
        "a.nope",
        "a.b[2]",
        "a.b[0].nope",
        "a.b[1].d[2]",
        "a.b.c",  # name on a list
        "a[0]",  # index on a mapping
        "top.x",  # name on a string
        "top[0]",  # index on a string
        "n.x",
        "n[0]",
        "a.x.y",  # through None
        "list[0][2]",
        "list[2]",
        "A",  # case-sensitive
    ],
)
def test_missing(path: str) -> None:
    assert lookup(DATA, path) is MISSING


def test_missing_is_distinct_from_none() -> None:
    assert lookup({"x": None}, "x") is None
    assert lookup({"x": None}, "y") is MISSING
    assert MISSING is not None


def test_index_on_tuple_is_missing() -> None:
    # Paths index JSON arrays, i.e. lists.
    assert lookup({"t": (1, 2)}, "t[0]") is MISSING


def test_large_index_is_missing() -> None:
    assert lookup({"l": [1]}, "l[99999999999999999999]") is MISSING


def test_lookup_does_not_mutate() -> None:
    data = {"a": {"b": [1]}}
    lookup(data, "a.b[0]")
    lookup(data, "a.c")
    assert data == {"a": {"b": [1]}}
