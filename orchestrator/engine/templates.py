"""``{{…}}`` templates over task data, rendered in Jinja2's immutable sandbox.

A value that is exactly one ``{{ expression }}`` keeps its type (a list stays a list, a
number a number); anything else renders to text. A missing parameter is
TEMPLATE_METADATA_ERROR and bad syntax TEMPLATE_SYNTAX_ERROR: both send the task to its
error path, neither crashes the engine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaError

from orchestrator.engine.functions import FILTERS, FUNCTIONS, FunctionError
from orchestrator.engine.template_limits import MAX_TEXT, LimitedSandbox, OutputTooLarge, check_size

_SINGLE = re.compile(r"^\{\{\s*((?:(?!\}\}).)+?)\s*\}\}\Z", re.S)
# Most templates in process files only name a parameter, perhaps with default(none):
# those are looked up directly when the parameter is there (Jinja's context costs more
# than the rest of a step's logic). Anything else, or a name that is missing (it may be a
# global function, or undefined), goes through Jinja.
_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\s*\|\s*default\(\s*none\s*\))?\Z")
_LITERALS = frozenset({"true", "false", "none", "True", "False", "None"})
_env = LimitedSandbox(undefined=StrictUndefined, autoescape=False)
_env.globals.update(FUNCTIONS)
_env.filters.update(FILTERS)


class TemplateError(Exception):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message

    def as_task_data(self) -> dict[str, Any]:
        return {"error": self.error, "code": self.error, "message": self.message}


@lru_cache(maxsize=4096)
def _compile(source: str) -> Any:
    single = _SINGLE.match(source)
    try:
        if single:
            expr = _env.compile_expression(single.group(1), undefined_to_none=False)
            name = _NAME.match(single.group(1))
            if name and name.group(1) not in _LITERALS:
                return ("name", (name.group(1), expr))
            return ("expr", expr)
        return ("text", _env.from_string(source))
    except TemplateSyntaxError as exc:
        raise TemplateError("TEMPLATE_SYNTAX_ERROR", f"{source!r}: {exc.message}") from exc


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside ``value`` (dicts and lists are walked)."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        mode, compiled = _compile(value)
        if mode == "name":
            name, compiled = compiled
            if name in context:
                return _plain(value, context[name])
            mode = "expr"
        try:
            if mode == "expr":
                result = check_size(compiled(**context), "the value")
            else:
                result = _render_text(compiled, context)
        except OutputTooLarge as exc:
            raise TemplateError("TEMPLATE_OUTPUT_TOO_LARGE", f"{_short(value)}: {exc}") from exc
        except UndefinedError as exc:
            raise TemplateError("TEMPLATE_METADATA_ERROR", f"{value!r}: {exc.message}") from exc
        except SecurityError as exc:
            raise TemplateError("TEMPLATE_SYNTAX_ERROR", f"{value!r}: not allowed ({exc})") from exc
        except FunctionError as exc:
            raise TemplateError("TEMPLATE_FUNCTION_ERROR", f"{value!r}: {exc}") from exc
        except (
            JinjaError,
            TypeError,
            ValueError,
            ArithmeticError,
            LookupError,
            AttributeError,
            AssertionError,
            RecursionError,
            NameError,  # Jinja folds "{{ 'nan' | float }}" into code naming `nan`
        ) as exc:
            # Jinja reports some misuse (unknown filter in a branch, bad filter arguments)
            # only while rendering; it is still the template's fault, not the engine's.
            raise TemplateError("TEMPLATE_SYNTAX_ERROR", f"{value!r}: {exc}") from exc
        if mode == "expr" and _is_undefined(result):
            raise TemplateError("TEMPLATE_METADATA_ERROR", f"{value!r}: undefined")
        return _plain(value, result) if mode == "expr" else result
    if isinstance(value, Mapping):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


def _render_text(template: Any, context: Mapping[str, Any]) -> str:
    """The template's text, counted as it is produced: a loop printing a long text stops
    at MAX_TEXT characters instead of filling memory."""
    out: list[str] = []
    total = 0
    for chunk in template.generate(**context):
        total += len(chunk)
        if total > MAX_TEXT:
            raise OutputTooLarge(f"the text would be longer than {MAX_TEXT} characters")
        out.append(chunk)
    return "".join(out)


def _short(source: str) -> str:
    return repr(source if len(source) <= 200 else source[:200] + "…")


_JSON_SCALARS = (str, int, float, bool, type(None))


def _plain(source: str, value: Any) -> Any:
    """Keep a single expression's value only if it is JSON data (task data is JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        # Stored, it would make every later answer about the task fail.
        raise TemplateError(
            "TEMPLATE_SYNTAX_ERROR", f"{source!r}: gives {value}, not a JSON number"
        )
    if isinstance(value, _JSON_SCALARS):
        return str(value) if type(value) is not str and isinstance(value, str) else value
    if isinstance(value, list | tuple):
        return [_plain(source, v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(source, v) for k, v in value.items()}
    raise TemplateError(
        "TEMPLATE_SYNTAX_ERROR",
        f"{source!r}: gives a {type(value).__name__}, not a value (add | list?)",
    )


def _is_undefined(value: Any) -> bool:
    return isinstance(value, StrictUndefined)


def check_syntax(value: Any) -> None:
    """Raise TemplateError for a template that cannot compile (used at deploy time)."""
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        _compile(value)
    elif isinstance(value, Mapping):
        for v in value.values():
            check_syntax(v)
    elif isinstance(value, list):
        for v in value:
            check_syntax(v)
