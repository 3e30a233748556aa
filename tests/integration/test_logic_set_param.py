"""set_param: templates, the documented functions, the sandbox's limits, and each error tag
sending the task to its error path."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import pytest
from stack import Stack, running_stack

from orchestrator.engine.templates import TemplateError, render

CTX = {"n": 5, "s": "abc", "key": "k", "when": "2026-01-02T03:04:05Z"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ n * 2 + 1 }}", 11),
        ("{{ n / 2 }}", 2.5),
        ("{{ n // 2 }}", 2),
        ("{{ n % 2 }}", 1),
        ("{{ 2 ** 10 }}", 1024),
        ("{{ sha1(s) }}", hashlib.sha1(b"abc").hexdigest()),
        ("{{ s | sha256 }}", hashlib.sha256(b"abc").hexdigest()),
        ("{{ md5(s) }}", hashlib.md5(b"abc").hexdigest()),
        ("{{ hmac_sha256(key, s) }}", hmac.new(b"k", b"abc", hashlib.sha256).hexdigest()),
        ("{{ base64_encode(s) }}", base64.b64encode(b"abc").decode()),
        ("{{ 'YWJj' | base64_decode }}", "abc"),
        ("{{ url_encode('a b&c') }}", "a%20b%26c"),
        ("{{ number('4.0') }}", 4),
        ("{{ number('4.5') + 1 }}", 5.5),
        ("{{ parse_time(when) }}", 1767323045),
        ("{{ iso_time(1767323045) }}", "2026-01-02T03:04:05Z"),
        ("sig={{ sha1(s)[:6] }}", "sig=a9993e"),
    ],
)
def test_functions(template: str, expected: Any) -> None:
    assert render(template, CTX) == expected


def test_time_functions() -> None:
    now = int(time.time())
    assert now <= render("{{ unixtime() }}", {}) <= now + 1
    assert now + 60 <= render("{{ unixtime(60) }}", {}) <= now + 61
    assert len(render("{{ uuid() }}", {})) == 36


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{{ 'x' * 300000 }}", "TEMPLATE_OUTPUT_TOO_LARGE"),
        ("{{ [1] * 300000 }}", "TEMPLATE_OUTPUT_TOO_LARGE"),
        ("{{ 9 ** 99999 }}", "TEMPLATE_SYNTAX_ERROR"),
        ("{{ s.__class__ }}", "TEMPLATE_METADATA_ERROR"),
        ("{{ base64_decode('!!') }}", "TEMPLATE_FUNCTION_ERROR"),
        ("{{ number('many') }}", "TEMPLATE_FUNCTION_ERROR"),
        ("{{ parse_time('soon') }}", "TEMPLATE_FUNCTION_ERROR"),
        ("{{ missing }}", "TEMPLATE_METADATA_ERROR"),
        ("{{ n | nosuchfilter }}", "TEMPLATE_SYNTAX_ERROR"),
    ],
)
def test_refused(template: str, error: str) -> None:
    with pytest.raises(TemplateError) as exc:
        render(template, CTX)
    assert exc.value.error == error


SETTER = {
    "slug": "setter",
    "title": "Setter",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "set"}]},
        "set": {
            "on_error": "failed",
            "logics": [
                {
                    "type": "set_param",
                    "set": {
                        "total": "{{ price * qty }}",
                        "label": "{{ name | upper }}-{{ qty }}",
                        "digest": "{{ sha1(name) }}",
                        "nested": {"first": "{{ items[0] }}", "all": "{{ items }}"},
                        "stamp": "{{ unixtime() }}",
                        "ClientSecret": "never stored",
                    },
                },
                {"type": "go", "to": "ok"},
            ],
        },
        "ok": {"kind": "success"},
        "failed": {"kind": "escalation"},
    },
}


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with running_stack(db_url) as s:
        s.deploy(SETTER)
        yield s


def test_set_param_in_a_process(stack: Stack) -> None:
    done = stack.run("setter", {"price": 2.5, "qty": 4, "name": "ab", "items": [7, 8]})
    data = done["data"]
    assert done["outcome"] == "success"
    assert (data["total"], data["label"], data["digest"]) == (
        10.0,
        "AB-4",
        hashlib.sha1(b"ab").hexdigest(),
    )
    assert data["nested"] == {"first": 7, "all": [7, 8]}
    assert abs(data["stamp"] - time.time()) < 30
    assert "ClientSecret" not in data


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"qty": 1, "name": "a", "items": [1]}, "TEMPLATE_METADATA_ERROR"),
        ({"price": "x", "qty": "y", "name": "a", "items": [1]}, "TEMPLATE_SYNTAX_ERROR"),
        ({"price": "x", "qty": 300000, "name": "a", "items": [1]}, "TEMPLATE_OUTPUT_TOO_LARGE"),
    ],
)
def test_set_param_errors_go_to_the_error_path(
    stack: Stack, data: dict[str, Any], error: str
) -> None:
    done = stack.run("setter", data)
    assert (done["node"]["id"], done["data"]["error"]) == ("failed", error)
    assert "total" not in done["data"]
