"""The direct lookup of ``{{ name.field | default(literal) }}`` templates (templates._lookup)
answers exactly as Jinja does: same value and type, or the same TemplateError."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from orchestrator.engine import templates
from orchestrator.engine.template_limits import MAX_TEXT
from orchestrator.engine.templates import TemplateError, render

NAMES = [
    "name",
    "n",
    "ratio",
    "flag",
    "nothing",
    "empty",
    "items",
    "d",
    "missing",
    "AccountSid",
    "sid",
    "root",
    "big",
    "nan",
    "uuid",  # a global function
    "range",  # a Jinja global
    "loop",
    "caller",
    "self",
    "d.k",
    "d.nested",
    "d.nested.x",
    "d.nested.missing",
    "d.missing",
    "d.missing.x",
    "d.items",  # a dict method, not d["items"]
    "d.keys",
    "d.get",
    "d.__class__",
    "withkeys.items",
    "withkeys.values",
    "root.task_id",
    "root.ref",
    "missing.x",
    "n.real",
    "name.upper",
    "items.x",
    "nothing.x",
    "a.b",
    "a.b.c",
    "huge.list",
]
DEFAULTS = [
    "",
    " | default(none)",
    "|default(None)",
    " | default( 86400 )",
    " | default(-5)",
    " | default(1.5)",
    " | default('')",
    " | default('x y')",
    ' | default("q")',
    " | default(true)",
    " | default(False)",
]
SPACING = ["{{ %s }}", "{{%s}}", "{{   %s  }}"]


def contexts() -> list[dict[str, Any]]:
    full = {
        "name": "Ann",
        "n": 5,
        "ratio": 0.5,
        "flag": True,
        "nothing": None,
        "empty": "",
        "items": [1, "two", {"three": 3}],
        "d": {"k": "v", "nested": {"x": 1, "y": None}, "list": [1, 2]},
        "withkeys": {"items": "an item", "values": [1], "keys": None},
        "AccountSid": "AC123",
        "sid": "SM456",
        "root": {"task_id": "t-1", "ref": None, "conv_id": 7},
        "big": "x" * (MAX_TEXT + 1),
        "nan": float("nan"),
        "uuid": "not the function",
        "loop": "a loop value",
        "a": {"b": {"c": [1, 2]}},
        "huge": {"list": ["y" * 1000] * (MAX_TEXT // 1000 + 1)},
    }
    sparse = {"name": None, "d": None, "a": {"b": "text"}, "root": {"task_id": "t-2"}}
    odd = {"d": ["not", "a", "dict"], "a": {"b": {}}, "root": {}, "n": True, "sid": 0}
    return [full, sparse, odd, {}]


def outcome(template: str, context: dict[str, Any]) -> tuple[str, Any, type]:
    try:
        value = render(template, context)
    except TemplateError as exc:
        return ("error", (exc.error, exc.message), TemplateError)
    return ("value", value, type(value))


def through_jinja(template: str, context: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(templates, "_lookup", lambda path, ctx: templates._MISSING)
        return outcome(template, context)


def test_direct_lookup_equals_jinja(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = direct = 0
    for name, default, spacing in itertools.product(NAMES, DEFAULTS, SPACING):
        template = spacing % (name + default)
        for context in contexts():
            fast = outcome(template, context)
            slow = through_jinja(template, context, monkeypatch)
            if fast[0] == "value" and fast[1] != fast[1]:  # NaN is not equal to itself
                continue
            assert fast == slow, (template, sorted(context))
            checked += 1
            path = templates._compile(template)
            if path[0] == "path" and templates._lookup(path[1], context) is not templates._MISSING:
                direct += 1
    # The fast path did answer most of them (not everything fell back to Jinja).
    assert direct > checked // 4


@pytest.mark.parametrize(
    "template",
    [
        "{{ AccountSid | default(none) }}",
        "{{ sid }}",
        "{{ root.task_id }}",
        "{{ status_timeout | default(86400) }}",
        "{{ d.missing | default('x') }}",
    ],
)
def test_common_forms_skip_jinja(template: str, monkeypatch: pytest.MonkeyPatch) -> None:
    context = {"sid": "SM1", "root": {"task_id": "t"}, "d": {}}
    expected = through_jinja(template, context, monkeypatch)

    def no_jinja(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("rendered through Jinja")

    path = templates._compile(template)
    assert path[0] == "path"
    with monkeypatch.context() as patch:
        patch.setattr(type(path[1].expr), "__call__", no_jinja)
        assert outcome(template, context) == expected


def test_results_are_copies() -> None:
    context = {"d": {"list": [1, 2]}}
    value = render("{{ d.list }}", context)
    value.append(3)
    assert context == {"d": {"list": [1, 2]}}
