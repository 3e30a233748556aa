"""The condition logic inside a process: blocks in order, AND within a block, the first
match wins, go is the default; a missing key or a failed cast fails the comparison."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from logic_procs import one_node
from stack import Stack, running_stack

ROUTER = one_node(
    "router",
    {
        "type": "condition",
        "if": [
            {"param": "amount", "fun": "more_eq", "value": 100, "cast": "number"},
            {"param": "country", "fun": "regexp", "value": "^(US|CA)$"},
        ],
        "to": "other",
    },
    {
        "type": "condition",
        "if": [{"param": "vip", "fun": "eq", "value": "true", "cast": "boolean"}],
        "to": "other",
    },
)


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url) as s:
        s.deploy(ROUTER)
        yield s


@pytest.mark.parametrize(
    ("data", "node"),
    [
        ({"amount": "150", "country": "US"}, "other"),  # both of block 1
        ({"amount": 99.5, "country": "US"}, "ok"),  # AND: one fails
        ({"amount": 150, "country": "FR"}, "ok"),
        ({"amount": 1, "vip": 1}, "other"),  # block 2, boolean cast of 1
        ({"country": "US"}, "ok"),  # missing key fails block 1
        ({"amount": "lots", "country": "US"}, "ok"),  # failed cast fails it too
        ({"amount": {"a": 1}, "vip": "no"}, "ok"),
    ],
)
def test_routing(stack: Stack, data: dict[str, Any], node: str) -> None:
    assert stack.run("router", data)["node"]["id"] == node


def test_bad_regexp_is_refused_at_deploy(stack: Stack) -> None:
    bad = one_node(
        "bad-re",
        {"type": "condition", "if": [{"param": "a", "fun": "regexp", "value": "("}], "to": "ok"},
    )
    r = stack.client.post("/api/v1/processes", json=bad)
    assert r.status_code == 422
    assert r.json()["error"]["details"]["field"] == "logics[0].if[0].value"
