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
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaError

from orchestrator.engine.functions import FILTERS, FUNCTIONS, FunctionError
from orchestrator.engine.template_limits import MAX_TEXT, LimitedSandbox, OutputTooLarge, check_size

_SINGLE = re.compile(r"^\{\{\s*((?:(?!\}\}).)+?)\s*\}\}\Z", re.S)
# Most templates in process files only name a parameter (or a field of one), perhaps with
# a literal default: "{{ sid }}", "{{ root.ref }}", "{{ AccountSid | default(none) }}".
# Those are looked up directly (Jinja's context costs more than the rest of a step's
# logic; a send renders a dozen of them). Whatever the direct lookup is not sure to
# answer exactly as Jinja would goes through Jinja (see _lookup).
_PATH = re.compile(
    r"([A-Za-z_][A-Za-z0-9_]*(?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*)"
    r"(?:\s*\|\s*default\(\s*(none|None|true|false|True|False|-?\d+(?:\.\d+)?"
    r"|'[^'\\]*'|\"[^\"\\]*\")\s*\))?\Z"
)
# Names Jinja resolves without the context (`self` is the template): never looked up here.
_LITERALS = frozenset({"true", "false", "none", "True", "False", "None", "self"})
# `a.b` in the sandbox is getattr first: `d.items` is the method, not d["items"].
_DICT_ATTRIBUTES = frozenset(dir(dict))
_MISSING: Any = object()
_env = LimitedSandbox(undefined=StrictUndefined, autoescape=False)
_env.globals.update(FUNCTIONS)
_env.filters.update(FILTERS)


@dataclass(frozen=True, slots=True)
class _Path:
    """``{{ name.field… | default(literal) }}``; ``expr`` is the same through Jinja."""

    names: tuple[str, ...]
    expr: Any
    has_default: bool
    default: Any  # the literal's value, as Jinja reads it
    # A missing first name is Jinja's undefined (so the default) only when no global
    # function has that name.
    default_if_absent: bool


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
            path = _PATH.match(single.group(1))
            if path is None:
                return ("expr", expr)
            names = tuple(n.strip() for n in path.group(1).split("."))
            if names[0] in _LITERALS:
                return ("expr", expr)
            literal = path.group(2)
            default = _env.compile_expression(literal)() if literal is not None else None
            absent_ok = literal is not None and len(names) == 1 and names[0] not in _env.globals
            return ("path", _Path(names, expr, literal is not None, default, absent_ok))
        return ("text", _env.from_string(source))
    except TemplateSyntaxError as exc:
        raise TemplateError("TEMPLATE_SYNTAX_ERROR", f"{source!r}: {exc.message}") from exc


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside ``value`` (dicts and lists are walked)."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        mode, compiled = _compile(value)
        if mode == "path":
            found = _lookup(compiled, context)
            if found is not _MISSING:
                try:
                    return _plain(value, _bounded(found))
                except OutputTooLarge as exc:
                    message = f"{_short(value)}: {exc}"
                    raise TemplateError("TEMPLATE_OUTPUT_TOO_LARGE", message) from exc
            mode, compiled = "expr", compiled.expr
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


def _lookup(path: _Path, context: Mapping[str, Any]) -> Any:
    """The value Jinja would give for ``path``, or _MISSING when only Jinja can say (an
    undefined name without a default, a global function, anything but plain dicts)."""
    value = context.get(path.names[0], _MISSING)
    if value is _MISSING:
        return path.default if path.default_if_absent else _MISSING
    last = len(path.names) - 1
    for i in range(1, last + 1):
        name = path.names[i]
        if type(value) is not dict or name in _DICT_ATTRIBUTES:
            return _MISSING
        value = value.get(name, _MISSING)
        if value is _MISSING:
            # An absent key of a dict is undefined: the default, else Jinja's error.
            return path.default if path.has_default and i == last else _MISSING
    return value


def _bounded(value: Any) -> Any:
    """check_size, as Jinja's path applies it, for what could be over the bound."""
    if type(value) is str:
        if len(value) > MAX_TEXT:
            check_size(value, "the value")
    elif not isinstance(value, _NUMBERS):  # a number counts as a few characters
        check_size(value, "the value")
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
_NUMBERS = (int, float, type(None))


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
