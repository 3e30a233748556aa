"""Unit tests for orchestrator/engine/templates.py."""

from __future__ import annotations

import copy
import random
import types
from typing import Any

import pytest

from orchestrator.engine.templates import TemplateError, check_syntax, render

SYNTAX = "TEMPLATE_SYNTAX_ERROR"
METADATA = "TEMPLATE_METADATA_ERROR"


def context() -> dict[str, Any]:
    return {
        "name": "Ann",
        "n": 5,
        "ratio": 0.5,
        "flag": True,
        "nothing": None,
        "items": [1, 2, 3],
        "a": {"b": [10, {"c": "deep"}]},
        "d": {"k": "v", "nested": {"x": 1}},
        "root": {"task_id": "t-1", "ref": "SM123"},
        "empty": "",
    }


def render_ctx(value: Any) -> Any:
    return render(value, context())


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{name}}", "Ann"),
        ("{{ name }}", "Ann"),
        ("{{   name   }}", "Ann"),
        ("{{ a.b[0] }}", 10),
        ("{{ a.b[1].c }}", "deep"),
        ("{{ a['b'][1]['c'] }}", "deep"),
        ("{{ root.task_id }}", "t-1"),
        ("{{ root.ref }}", "SM123"),
        ("{{ d.nested.x }}", 1),
        ("{{ n + 1 }}", 6),
        ("{{ n * ratio }}", 2.5),
        ("{{ name | upper }}", "ANN"),
        ("{{ items | length }}", 3),
        ("{{ 'x' ~ n }}", "x5"),
        ("{{ missing | default(90000) }}", 90000),
        ("{{ missing | default('fallback') }}", "fallback"),
        ("{{ n if flag else 0 }}", 5),
        ("{{ empty }}", ""),
    ],
)
def test_single_expression(template: str, expected: Any) -> None:
    result = render_ctx(template)
    assert result == expected
    assert type(result) is type(expected)


def test_type_preserved_list() -> None:
    assert render_ctx("{{ items }}") == [1, 2, 3]
    assert isinstance(render_ctx("{{ items }}"), list)


def test_type_preserved_dict() -> None:
    assert render_ctx("{{ d }}") == {"k": "v", "nested": {"x": 1}}


def test_type_preserved_bool_float_none() -> None:
    assert render_ctx("{{ flag }}") is True
    assert render_ctx("{{ ratio }}") == 0.5
    assert render_ctx("{{ nothing }}") is None
    assert render_ctx("{{ missing | default(none) }}") is None
    assert render_ctx("{{ nothing | default(none) }}") is None


def test_default_applies_only_to_undefined() -> None:
    # Jinja's default() without boolean=True keeps a present None or empty value.
    assert render_ctx("{{ empty | default('x') }}") == ""
    assert render_ctx("{{ empty | default('x', true) }}") == "x"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hi {{ name }}", "Hi Ann"),
        ("{{ name }}!", "Ann!"),
        (" {{ n }}", " 5"),
        ("{{ n }} items", "5 items"),
        ("{{ n }}{{ n }}", "55"),
        ("{{ n }} and {{ name }}", "5 and Ann"),
        ("{{ items }}", [1, 2, 3]),
        ("list: {{ items }}", "list: [1, 2, 3]"),
        ("{{ nothing }} here", "None here"),
        ("{% if n > 1 %}many{% else %}few{% endif %}", "many"),
        ("{% for i in items %}{{ i }},{% endfor %}", "1,2,3,"),
        ("id={{ root.task_id }}&n={{ n }}", "id=t-1&n=5"),
        ("{{ '}}' }}", "}}"),
        ("<b>{{ '<i>' }}</b>", "<b><i></b>"),  # no autoescaping
    ],
)
def test_text_renders_to_string(template: str, expected: Any) -> None:
    assert render_ctx(template) == expected


def test_plain_strings_pass_through() -> None:
    # Only text containing "{{" or "{%" is a template; a lone comment is left alone.
    for text in ("", "hello", "a } b", "{ name }", "50% off", "{# not rendered #}", "}} %}"):
        assert render_ctx(text) == text


def test_non_strings_pass_through() -> None:
    marker = object()
    for value in (5, 1.5, None, True, marker, (1, "{{ n }}"), b"{{ n }}"):
        assert render_ctx(value) is value


def test_walks_dicts_and_lists() -> None:
    value = {
        "to": "{{ root.ref }}",
        "n": "{{ n }}",
        "fixed": 7,
        "list": ["{{ name }}", 3, {"z": "{{ a.b[1].c }}"}, ["{{ items }}"]],
        "{{ n }}": "keys are not rendered",
    }
    assert render_ctx(value) == {
        "to": "SM123",
        "n": 5,
        "fixed": 7,
        "list": ["Ann", 3, {"z": "deep"}, [[1, 2, 3]]],
        "{{ n }}": "keys are not rendered",
    }


def test_render_does_not_mutate_input_or_context() -> None:
    value = {"a": ["{{ items }}"], "b": "{{ d }}"}
    ctx = context()
    before_value, before_ctx = copy.deepcopy(value), copy.deepcopy(ctx)
    render(value, ctx)
    assert value == before_value
    assert ctx == before_ctx


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "template",
    [
        "{{ missing }}",
        "{{missing}}",
        "Hi {{ missing }}",
        "{{ missing.x }}",
        "{{ a.nope }}",
        "{{ a.b[9] }}",
        "{{ d.k.x.y }}",
        "{{ missing | upper }}",
        "{% if missing %}x{% endif %}",
        "{{ nothing.attr }}",
        "{{ missing() }}",
    ],
)
def test_missing_param_is_metadata_error(template: str) -> None:
    with pytest.raises(TemplateError) as info:
        render_ctx(template)
    assert info.value.error == METADATA
    assert repr(template) in info.value.message
    assert str(info.value) == info.value.message


def test_metadata_error_names_the_parameter() -> None:
    with pytest.raises(TemplateError) as info:
        render_ctx("{{ Number_to }}")
    assert "Number_to" in info.value.message


def test_metadata_error_inside_structure() -> None:
    with pytest.raises(TemplateError) as info:
        render_ctx({"ok": "{{ n }}", "list": ["{{ n }}", "{{ gone }}"]})
    assert info.value.error == METADATA


@pytest.mark.parametrize(
    "template",
    [
        "{{ name ",
        "{{ }}",
        "x {{ }}",
        "{{ name | }}",
        "{{ name.}}",
        "{{ 1 + }}",
        "{% if %}",
        "{% if n %}no end",
        "{% endfor %}",
        "{% bogus %}",
        "{{ name | no_such_filter }}",
        "{{ name is no_such_test }}",
        "{{ a b }}",
        "{{ (( }}",
    ],
)
def test_syntax_error(template: str) -> None:
    with pytest.raises(TemplateError) as info:
        render_ctx(template)
    assert info.value.error == SYNTAX
    assert repr(template) in info.value.message


@pytest.mark.parametrize(
    "template", ["{{ 1 / 0 }}", "{{ name + 1 }}", "{{ n | slice(0) | list }}", "{{ '%d' % name }}"]
)
def test_runtime_errors_become_template_errors(template: str) -> None:
    with pytest.raises(TemplateError) as info:
        render_ctx(template)
    assert info.value.error == SYNTAX


def test_syntax_error_is_raised_every_time() -> None:
    # Compilation is cached; a failure must not be cached as a success.
    for _ in range(3):
        with pytest.raises(TemplateError):
            render_ctx("{{ broken ")


def test_as_task_data() -> None:
    err = TemplateError(METADATA, "'{{ x }}': 'x' is undefined")
    assert err.as_task_data() == {
        "error": METADATA,
        "code": METADATA,
        "message": "'{{ x }}': 'x' is undefined",
    }


# --------------------------------------------------------------------------- sandbox

SANDBOX_PAYLOADS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "x {{ ''.__class__.__mro__ }}",
    "{{ ''.__class__ }}",
    "x {{ ''.__class__ }}",
    "{{ name.__class__.__base__ }}",
    "{{ items.__class__ }}",
    "{{ d.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ lipsum.__globals__['os'] }}",
    "x {{ lipsum.__globals__ }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ range.__self__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ name | attr('__class__') }}",
    "x {{ name | attr('__class__') }}",
    "{{ '{0.__class__}'.format(name) }}",
    "{{ '{0.__class__.__mro__}'.format(items) }}",
    "{{ items.append(4) }}",
    "{{ items.pop() }}",
    "{{ d.update({'k': 'x'}) }}",
    "{{ d.clear() }}",
    "{% set _ = items.append(4) %}done",
    "{{ range(10 ** 7) | list }}",
    "{{ items.__len__() }}",
    "{{ d.nested.__dict__ }}",
]


@pytest.mark.parametrize("template", SANDBOX_PAYLOADS)
def test_sandbox_blocks(template: str) -> None:
    ctx = context()
    before = copy.deepcopy(ctx)
    with pytest.raises(TemplateError) as info:
        render(template, ctx)
    assert info.value.error in (SYNTAX, METADATA)
    assert ctx == before  # the immutable sandbox: nothing was modified


def test_sandbox_attribute_leaks_nothing() -> None:
    """Whatever the outcome, no Python internals come back as a value."""
    leaky = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, dict)
    for template in SANDBOX_PAYLOADS:
        try:
            result = render_ctx(template)
        except TemplateError:
            continue
        assert not isinstance(result, leaky), (template, result)
        assert "class" not in str(result) and "module" not in str(result), (template, result)


def test_safe_methods_still_work() -> None:
    assert render_ctx("{{ name.lower() }}") == "ann"
    assert render_ctx("{{ d.get('k') }}") == "v"
    assert render_ctx("{{ name.startswith('A') }}") is True
    assert render_ctx("{{ '{}-{}'.format(n, name) }}") == "5-Ann"


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'abc' | truncate(1) }}",
        "{{ items | map('no_such_filter') | list }}",
        "{{ items | select('no_such_test') | list }}",
        "{{ ratio | round(method='bad') }}",
        "{% if flag %}{{ name | no_such_filter }}{% endif %}",
        "{{ items | dictsort }}",
        "{{ items | indent(2) }}",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    ],
)
def test_render_raises_only_template_error(template: str) -> None:
    with pytest.raises(TemplateError):
        render_ctx(template)


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'nan' | float }}",  # constant-folded by Jinja into code naming `nan`: NameError
        "{{ name | replace('Ann', 'inf') | float }}",
        "{{ [1, name | replace('Ann', '-inf') | float] }}",
        "{{ 1e308 * 10 }}",
    ],
)
def test_numbers_json_cannot_hold_are_template_errors(template: str) -> None:
    """A stored NaN made every later answer about the task fail; a NameError escaped as an
    engine failure, retried forever."""
    with pytest.raises(TemplateError) as info:
        render_ctx(template)
    assert info.value.error == SYNTAX
    assert render_ctx("{{ 'nan' | float }} text") == "nan text"  # text is text


# --------------------------------------------------------------------------- check_syntax


def test_check_syntax_accepts_valid_templates_without_context() -> None:
    check_syntax("{{ not_known_at_deploy }}")
    check_syntax("Hi {{ name | default('you') }} {% if x %}!{% endif %}")
    check_syntax({"a": ["{{ x }}", {"b": "{{ y.z[0] }}"}], "c": 5, "d": None})
    check_syntax("no template here {")
    check_syntax(12)
    check_syntax(None)


@pytest.mark.parametrize(
    "value",
    [
        "{{ x ",
        "x {% if %}",
        {"a": "{{ ok }}", "b": "{{ x | }}"},
        ["{{ ok }}", ["{% for %}"]],
        {"deep": {"deeper": ["fine", "{{ broken"]}},
        "{{ x | no_such_filter }}",
    ],
)
def test_check_syntax_rejects(value: Any) -> None:
    with pytest.raises(TemplateError) as info:
        check_syntax(value)
    assert info.value.error == SYNTAX


def test_check_syntax_does_not_render() -> None:
    check_syntax("{{ 1 / 0 }}")  # fails only when rendered
    with pytest.raises(TemplateError):
        render_ctx("{{ 1 / 0 }}")


# --------------------------------------------------------------------------- fuzz

# hypothesis is not installed in the venv, so this is a seeded random fuzz instead.
FRAGMENTS = [
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    " ",
    "name",
    "n",
    "items",
    "a",
    "missing",
    "nothing",
    ".",
    "b",
    "[",
    "]",
    "0",
    "1",
    "(",
    ")",
    "'",
    '"',
    "|",
    "default",
    "upper",
    "length",
    "int",
    "string",
    "list",
    "first",
    "+",
    "-",
    "*",
    "/",
    "~",
    ",",
    "if",
    "else",
    "endif",
    "for",
    "in",
    "endfor",
    "set",
    "=",
    "none",
    "__class__",
    "__globals__",
    "é",
    "\n",
    "\\",
    ":",
]


def test_fuzz_render_raises_only_template_error() -> None:
    rng = random.Random(20240601)
    for _ in range(1500):
        text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 14)))
        try:
            render_ctx(text)
        except TemplateError as exc:
            assert exc.error in (SYNTAX, METADATA)
        try:
            check_syntax(text)
        except TemplateError as exc:
            assert exc.error == SYNTAX


@pytest.mark.parametrize(
    "context",
    [
        {"x": [1, {"a": "b"}], "unixtime": 5},
        {"x": None},
        {"x": 1.5},
        {"x": "text"},
        {},
        {"unixtime": "shadowed"},
    ],
)
@pytest.mark.parametrize("name", ["x", "unixtime", "none", "True"])
def test_a_bare_name_renders_as_jinja_would(context: dict, name: str) -> None:
    """``{{ name }}`` and ``{{ name | default(none) }}`` are looked up directly when the
    parameter is there; the answer (or the error) must be Jinja's own, which ``( … )``
    around the name forces."""
    for direct, jinja in (
        (f"{{{{ {name} }}}}", f"{{{{ ({name}) }}}}"),
        (f"{{{{ {name} | default(none) }}}}", f"{{{{ ({name}) | default(none) }}}}"),
    ):
        outcomes = []
        for source in (direct, jinja):
            try:
                outcomes.append(("value", render(source, context)))
            except TemplateError as exc:
                outcomes.append(("error", exc.error))
        assert outcomes[0] == outcomes[1], (direct, context)
