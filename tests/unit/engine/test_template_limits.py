"""Templates cannot build huge values: every operation that grows text or lists is
checked before it runs (TEMPLATE_OUTPUT_TOO_LARGE), and what a template prints is
counted as it streams out."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.engine.template_limits import MAX_TEXT
from orchestrator.engine.templates import TemplateError, render

CTX: dict[str, Any] = {"s": "x" * 100_000, "n": 1, "items": ["a", "b"], "big": 30_000_000}


@pytest.mark.parametrize(
    "template",
    [
        "{{ '{:>30000000}'.format(1) }}",
        "{{ '{:>{}}'.format(1, big) }}",
        "{{ '{0:.30000000f}'.format(1.5) }}",
        "{{ '{x:>30000000}'.format_map({'x': 1}) }}",
        "{{ '%30000000d' % 1 }}",
        "{{ '%*d' % (big, 1) }}",
        "{{ '%30000000d' | format(1) }}",
        "{{ 'x'.center(30000000) }}",
        "{{ 'x'.ljust(big) }}",
        "{{ 'x'.zfill(30000000) }}",
        "{{ 'x' | center(30000000) }}",
        "{{ s.replace('x', 'yyyy') }}",
        "{{ s | replace('x', 'yyyy') }}",
        "{{ ('x\\n' * 90000) | indent(300) }}",
        "{{ s | wordwrap(1, wrapstring='zzzz') }}",
        "{{ [s] * 3 }}",
        "{{ ([s] * 2) | join }}",
        "{{ [s, s, s] | join(',') }}",
        "{{ ''.join([s, s, s]) }}",
        "{{ s + s + s }}",
        "{{ s ~ s ~ s }}",
        "x{{ s ~ s ~ s }}",
        "{{ [[s, s], [s, s]] | string }}",
        "{{ [[s, s], [s, s]] | tojson }}",
        "{{ [[s, s], [s, s]] }}",
        "x{{ [[s, s], [s, s]] }}",
        "{% for i in range(100000) %}{{ s }}{% endfor %}",
        "{% for i in range(100000) %}0123456789{% endfor %}",
        "{{ range(10) | batch(300000000, 'x') | list }}",
    ],
)
def test_huge_values_are_refused_before_they_are_built(template: str) -> None:
    with pytest.raises(TemplateError) as refused:
        render(template, CTX)
    assert refused.value.error == "TEMPLATE_OUTPUT_TOO_LARGE", refused.value.message
    assert len(refused.value.message) < 1000  # the message quotes a short template


@pytest.mark.parametrize(
    "template",
    [
        "{% set x %}{% for i in range(9) %}{{ s }}{% endfor %}{% endset %}{{ x }}",
        "{% macro m() %}{{ s }}{% endmacro %}{{ m() }}",
        "{% filter upper %}{{ s }}{% endfilter %}",
        "{% for i in items recursive %}{{ loop([i]) }}{% endfor %}",
        "{% set ns = namespace(t='') %}{{ ns.t }}",
        "{{ lipsum(1000, False, 1000, 1000) }}",
    ],
)
def test_constructs_that_capture_or_generate_text_are_not_offered(template: str) -> None:
    with pytest.raises(TemplateError) as refused:
        render(template, CTX)
    assert refused.value.error in ("TEMPLATE_SYNTAX_ERROR", "TEMPLATE_METADATA_ERROR")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ '{:>5}'.format(n) }}", "    1"),
        ("{{ '%05d' % n }}", "00001"),
        ("{{ '%-3s|' | format('a') }}", "a  |"),
        ("{{ 'ab'.center(6, '*') }}", "**ab**"),
        ("{{ items | join(', ') }}", "a, b"),
        ("{{ 'x' * 10 }}", "x" * 10),
        ("{{ s ~ '!' }}", "x" * 100_000 + "!"),
        ("{% for i in range(3) %}{{ i }},{% endfor %}", "0,1,2,"),
        ("{{ items + ['c'] }}", ["a", "b", "c"]),
        ("{{ s | length }}", 100_000),
    ],
)
def test_ordinary_templates_still_work(template: str, expected: Any) -> None:
    result = render(template, CTX)
    if expected is not None:
        assert result == expected


def test_the_limit_is_the_size_not_the_count() -> None:
    assert render("{{ 'y' * " + str(MAX_TEXT) + " }}", {}) == "y" * MAX_TEXT
    with pytest.raises(TemplateError, match="longer than"):
        render("{{ 'y' * " + str(MAX_TEXT + 1) + " }}", {})
