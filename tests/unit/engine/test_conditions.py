"""Unit tests for orchestrator/engine/conditions.py (the condition logic's comparisons)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.engine.conditions import all_match, matches

FUNS = ("eq", "not_eq", "more", "less", "more_eq", "less_eq", "regexp")
ORDERING = ("more", "less", "more_eq", "less_eq")


def check(actual: Any, fun: str, value: Any, cast: str | None = None) -> bool:
    cond: dict[str, Any] = {"param": "x", "fun": fun, "value": value}
    if cast is not None:
        cond["cast"] = cast
    return matches(cond, {"x": actual})


# --------------------------------------------------------------------------- string


@pytest.mark.parametrize(
    ("actual", "fun", "value", "expected"),
    [
        ("a", "eq", "a", True),
        ("a", "eq", "A", False),
        ("a", "not_eq", "b", True),
        ("a", "not_eq", "a", False),
        (5, "eq", "5", True),
        ("5", "eq", 5, True),
        (True, "eq", "true", True),
        (False, "eq", "false", True),
        (True, "eq", True, True),
        (True, "eq", "True", False),
        (200, "not_eq", "201", True),
        ("b", "more", "a", True),
        ("a", "more", "b", False),
        ("a", "less", "b", True),
        ("a", "more_eq", "a", True),
        ("a", "less_eq", "a", True),
        ("b", "less_eq", "a", False),
        ("10", "more", "9", False),  # text order, not numeric
        (10, "less", 9, True),  # numbers compared as text under the default cast
        ("", "eq", "", True),
        ("é", "eq", "é", True),
        ([1, 2], "eq", "[1, 2]", True),
    ],
)
def test_string_cast(actual: Any, fun: str, value: Any, expected: bool) -> None:
    assert check(actual, fun, value, "string") is expected
    assert check(actual, fun, value) is expected  # string is the default cast


def test_default_fun_is_eq() -> None:
    assert matches({"param": "x", "value": "a"}, {"x": "a"}) is True
    assert matches({"param": "x", "value": "a"}, {"x": "b"}) is False


# --------------------------------------------------------------------------- number


@pytest.mark.parametrize(
    ("actual", "fun", "value", "expected"),
    [
        ("5", "eq", 5, True),
        (5, "eq", "5.0", True),
        (5.0, "eq", "5", True),
        (" 5 ", "eq", 5, True),
        ("5", "not_eq", 6, True),
        ("5", "not_eq", "5", False),
        ("10", "more", "9", True),
        (10, "more", 10, False),
        (10, "more_eq", 10, True),
        (9, "less", "10", True),
        (10, "less", 10, False),
        (10, "less_eq", "10", True),
        (11, "less_eq", 10, False),
        (-1.5, "less", 0, True),
        ("1e3", "eq", 1000, True),
        (0, "eq", "0", True),
    ],
)
def test_number_cast(actual: Any, fun: str, value: Any, expected: bool) -> None:
    assert check(actual, fun, value, "number") is expected


@pytest.mark.parametrize("fun", [f for f in FUNS if f != "regexp"])
@pytest.mark.parametrize(
    ("actual", "value"),
    [("abc", 1), (1, "abc"), ("", 1), ([1], 1), ({"a": 1}, 1), (True, 1), (1, False), ("1,5", 1)],
)
def test_number_uncastable_fails(fun: str, actual: Any, value: Any) -> None:
    assert check(actual, fun, value, "number") is False


def test_nan_never_matches() -> None:
    for fun in ("eq", "more", "less", "more_eq", "less_eq"):
        assert check("nan", fun, "nan", "number") is False


# --------------------------------------------------------------------------- boolean


@pytest.mark.parametrize(
    ("actual", "value", "equal"),
    [
        (True, True, True),
        ("true", True, True),
        ("TRUE", "true", True),
        (" True ", "1", True),
        (1, "true", True),
        ("1", True, True),
        (False, "false", True),
        ("0", False, True),
        (0, "false", True),
        ("False", "0", True),
        (True, False, False),
        ("true", "0", False),
        (1, 0, False),
    ],
)
def test_boolean_cast(actual: Any, value: Any, equal: bool) -> None:
    assert check(actual, "eq", value, "boolean") is equal
    assert check(actual, "not_eq", value, "boolean") is (not equal)


@pytest.mark.parametrize("fun", ORDERING)
def test_boolean_ordering_never_matches(fun: str) -> None:
    for actual, value in [(True, False), (False, True), (True, True), ("1", "0")]:
        assert check(actual, fun, value, "boolean") is False


@pytest.mark.parametrize("fun", ["eq", "not_eq", *ORDERING])
@pytest.mark.parametrize(("actual", "value"), [("yes", True), (True, "no"), (2, True), ("", False)])
def test_boolean_uncastable_fails(fun: str, actual: Any, value: Any) -> None:
    assert check(actual, fun, value, "boolean") is False


# --------------------------------------------------------------------------- regexp


@pytest.mark.parametrize(
    ("actual", "pattern", "expected"),
    [
        ("delivered", "^(delivered|read)$", True),
        ("read", "^(delivered|read)$", True),
        ("undelivered", "^(delivered|read)$", False),
        ("undelivered", "delivered", True),  # re.search: unanchored
        ("+14155550100", r"^\+1\d{10}$", True),
        ("14155550100", r"^\+1\d{10}$", False),
        (200, "^2..$", True),
        (True, "^true$", True),
        ("", "^$", True),
        ("line1\nline2", "^line2", False),
        ("ÄÖ", "ö", False),
        ("abc", "(?i)B", True),
    ],
)
def test_regexp(actual: Any, pattern: str, expected: bool) -> None:
    assert check(actual, "regexp", pattern) is expected


def test_regexp_ignores_cast() -> None:
    for cast in ("string", "number", "boolean"):
        assert check("abc", "regexp", "^a", cast) is True
        assert check(12, "regexp", "^12$", cast) is True


def test_regexp_value_is_text() -> None:
    assert check("x5", "regexp", 5) is True


# --------------------------------------------------------------------------- absent values


@pytest.mark.parametrize("fun", FUNS)
@pytest.mark.parametrize("cast", ["string", "number", "boolean"])
def test_missing_key_fails(fun: str, cast: str) -> None:
    cond = {"param": "x", "fun": fun, "cast": cast, "value": "v"}
    assert matches(cond, {}) is False
    assert matches(cond, {"y": "v"}) is False
    assert matches({**cond, "param": "a.b[0]"}, {"a": {"b": []}}) is False


@pytest.mark.parametrize("fun", FUNS)
@pytest.mark.parametrize("cast", ["string", "number", "boolean"])
def test_none_value_fails(fun: str, cast: str) -> None:
    cond = {"param": "x", "fun": fun, "cast": cast, "value": "None"}
    assert matches(cond, {"x": None}) is False  # even not_eq: an absent value never matches


def test_falsy_present_values_are_compared() -> None:
    assert check(0, "eq", "0") is True
    assert check("", "eq", "") is True
    assert check(False, "eq", False, "boolean") is True
    assert check(0, "less", 1, "number") is True


def test_unknown_fun_fails() -> None:
    assert check("a", "contains", "a") is False
    assert check(1, "gt", 0, "number") is False


def test_nested_param_path() -> None:
    data = {"msg": {"statuses": [{"code": "30003"}]}}
    cond = {"param": "msg.statuses[0].code", "fun": "more", "cast": "number", "value": 30000}
    assert matches(cond, data) is True
    assert matches({**cond, "param": "msg.statuses[1].code"}, data) is False


def test_matches_does_not_raise_on_odd_types() -> None:
    for actual in (object(), b"bytes", {"a": 1}, [None], 1 + 2j):
        for fun in FUNS:
            for cast in ("string", "number", "boolean"):
                assert isinstance(check(actual, fun, "1", cast), bool)


# --------------------------------------------------------------------------- all_match


def test_all_match_and_semantics() -> None:
    data = {"status": "delivered", "price": "0.0075", "ok": True}
    first = {"param": "status", "value": "delivered"}
    second = {"param": "price", "fun": "less", "cast": "number", "value": 0.01}
    third = {"param": "ok", "cast": "boolean", "value": "true"}
    failing = {"param": "status", "fun": "regexp", "value": "^failed$"}
    assert all_match([first], data) is True
    assert all_match([first, second, third], data) is True
    assert all_match([first, second, failing], data) is False
    assert all_match([failing, first], data) is False
    assert all_match([first, {"param": "missing", "value": "x"}], data) is False


def test_all_match_empty_list_is_true() -> None:
    assert all_match([], {}) is True


def test_all_match_short_circuits() -> None:
    class Boom(dict[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise AssertionError("second condition evaluated")

    failing = {"param": "x", "value": "no"}
    assert all_match([failing, Boom()], {"x": "yes"}) is False
