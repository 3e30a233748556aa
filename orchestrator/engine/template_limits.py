"""The template sandbox with bounds on what one template may build.

Jinja2's sandbox stops templates from reaching the host, not from building a gigabyte
string: ``'{:>30000000}'.format(1)``, ``'x' * 100000`` repeated, a loop printing a long
text, or a list of shared references turned into text. Every operation that can build a
large value is checked *before* it runs, against MAX_TEXT characters (or list items):

- ``*`` (text and lists), ``+`` and ``~`` (concatenation), ``**`` (integers);
- ``%``, ``str.format`` / ``format_map`` and the ``format`` filter: widths and precisions;
- ``str`` methods that pad or grow (center, ljust, rjust, zfill, expandtabs, replace, join)
  and the filters that do (center, indent, join, replace, wordwrap, batch, slice, string,
  tojson, pprint);
- everything a template prints, as it prints (streamed; see templates._render_text).

``namespace`` and ``lipsum`` are not offered: the first is the only way to carry a value
from one loop iteration to the next (and so grow it), the second builds text by count.
Blocks that capture output into a value (``{% set %}…{% endset %}``, macros, ``call``
and ``filter`` blocks, recursive loops) are refused when the template is compiled: all
output then streams out and is counted.
A refused operation raises OutputTooLarge (TEMPLATE_OUTPUT_TOO_LARGE for the task).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.nodes import Concat
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_TEXT = 200_000
MAX_POWER_BITS = 4096
_NUMBER_SIZE = 24  # characters a number (or other scalar) stands for when counted
_PRINTF_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_GROWING_METHODS = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "replace", "join", "format"}
)


# Blocks that collect output into a value (and loops that may call themselves).
_CAPTURING = (
    nodes.AssignBlock,
    nodes.Macro,
    nodes.CallBlock,
    nodes.FilterBlock,
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Extends,
    nodes.For,
)


class OutputTooLarge(SecurityError):
    """An operation would build a value over MAX_TEXT."""


def _refuse(what: str) -> OutputTooLarge:
    return OutputTooLarge(f"{what} would be longer than {MAX_TEXT} characters")


def expanded_size(value: Any, limit: int = MAX_TEXT) -> int:
    """Characters (roughly) ``value`` becomes as text, with shared parts counted each
    time they appear; stops counting past ``limit``."""
    memo: dict[int, int] = {}

    def size(item: Any) -> int:
        if isinstance(item, str):
            return len(item)
        key = id(item)
        if key in memo:
            return memo[key]
        if isinstance(item, Mapping):
            total = 2 + sum(size(k) + size(v) + 4 for k, v in item.items())
        elif isinstance(item, list | tuple):
            total = 2
            for element in item:
                total += size(element) + 2
                if total > limit:
                    break
        else:
            total = _NUMBER_SIZE
        memo[key] = total
        return total

    return size(value)


def check_size(value: Any, what: str) -> Any:
    if expanded_size(value) > MAX_TEXT:
        raise _refuse(what)
    return value


def _check_spec_number(text: str | None, what: str) -> None:
    if text == "*":
        raise OutputTooLarge(f"{what}: '*' widths are not allowed")
    if text and int(text) > MAX_TEXT:
        raise _refuse(what)


def check_printf(fmt: str) -> None:
    for match in _PRINTF_WIDTH.finditer(fmt):
        _check_spec_number(match.group(1), "a % format")
        _check_spec_number(match.group(2), "a % format")


def check_format(fmt: str) -> None:
    """Widths and precisions of a ``str.format`` string (nested fields are refused)."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format will say what is wrong
    for _literal, _name, spec, _conversion in fields:
        if not spec:
            continue
        if "{" in spec:
            raise OutputTooLarge("a format spec may not contain nested fields")
        for number in re.findall(r"\d+", spec):
            _check_spec_number(number, "a format spec")


def _check_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Before calling a growing ``str`` method from a template."""
    name = obj.__name__
    target: str = obj.__self__
    if name in ("center", "ljust", "rjust", "zfill"):
        width = args[0] if args else kwargs.get("width", 0)
        if isinstance(width, int) and width > MAX_TEXT:
            raise _refuse(f"str.{name}")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int) and target.count("\t") * max(size, 0) + len(target) > MAX_TEXT:
            raise _refuse("str.expandtabs")
    elif name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        count = target.count(old) if old else len(target) + 1
        if len(target) + count * len(new) > MAX_TEXT:
            raise _refuse("str.replace")
    elif name == "join" and args:
        items = list(args[0]) if not isinstance(args[0], list | tuple | str) else args[0]
        if expanded_size(items) + len(target) * len(items) > MAX_TEXT:
            raise _refuse("str.join")
    elif name == "format":
        check_format(target)


Check = Callable[[tuple[Any, ...], dict[str, Any]], None]


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _center(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = _arg(args, kwargs, 1, "width", 80)
    if isinstance(width, int) and width > MAX_TEXT:
        raise _refuse("center")


def _indent(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    text = str(_arg(args, kwargs, 0, "s", ""))
    width = _arg(args, kwargs, 1, "width", 4)
    pad = len(width) if isinstance(width, str) else (width if isinstance(width, int) else 0)
    if len(text) + (text.count("\n") + 1) * max(pad, 0) > MAX_TEXT:
        raise _refuse("indent")


def _join(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    value = _arg(args, kwargs, 0, "value", [])
    items = value if isinstance(value, list | tuple | str) else list(value)
    sep = str(_arg(args, kwargs, 1, "d", ""))
    if expanded_size(items) + len(sep) * len(items) > MAX_TEXT:
        raise _refuse("join")


def _replace(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    text = str(_arg(args, kwargs, 0, "s", ""))
    old, new = str(_arg(args, kwargs, 1, "old", "")), str(_arg(args, kwargs, 2, "new", ""))
    count = text.count(old) if old else len(text) + 1
    if len(text) + count * len(new) > MAX_TEXT:
        raise _refuse("replace")


def _wordwrap(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    text = str(_arg(args, kwargs, 0, "s", ""))
    width = _arg(args, kwargs, 1, "width", 79)
    wrap = _arg(args, kwargs, 3, "wrapstring", None) or "\n"
    lines = len(text) // max(width if isinstance(width, int) else 1, 1) + 1
    if len(text) + lines * len(str(wrap)) > MAX_TEXT:
        raise _refuse("wordwrap")


def _count(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    count = _arg(args, kwargs, 1, "linecount", None)
    count = _arg(args, kwargs, 1, "slices", count)
    if isinstance(count, int) and count > MAX_TEXT:
        raise _refuse("batch/slice")


def _printf(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    value = _arg(args, kwargs, 0, "value", "")
    if isinstance(value, str):
        check_printf(value)


def _whole(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if args:
        check_size(args[0], "converting this value to text")


_FILTER_CHECKS: dict[str, Check] = {
    "center": _center,
    "indent": _indent,
    "join": _join,
    "replace": _replace,
    "wordwrap": _wordwrap,
    "batch": _count,
    "slice": _count,
    "format": _printf,
    "string": _whole,
    "tojson": _whole,
    "pprint": _whole,
}


def _guarded(original: Callable[..., Any], check: Check) -> Callable[..., Any]:
    """``original`` with ``check`` run first on its arguments (after the environment or
    context Jinja passes to some filters)."""
    passes_context = hasattr(original, "jinja_pass_arg")

    def checked(*args: Any, **kwargs: Any) -> Any:
        check(args[1:] if passes_context else args, kwargs)
        return original(*args, **kwargs)

    checked.__name__ = original.__name__
    if passes_context:
        checked.jinja_pass_arg = original.jinja_pass_arg  # type: ignore[attr-defined]
    return checked


class _CodeGenerator(CodeGenerator):
    """``a ~ b`` goes through the environment's checked concatenation."""

    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with the bounds described in this module."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset(["*", "**", "+", "%"])

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=self._finalize, **options)
        for name in ("namespace", "lipsum"):
            self.globals.pop(name, None)
        for name, check in _FILTER_CHECKS.items():
            self.filters[name] = _guarded(self.filters[name], check)

    @staticmethod
    def _finalize(value: Any) -> Any:
        return value if isinstance(value, str) else check_size(value, "printing this value")

    def checked_concat(self, parts: Iterable[Any]) -> str:
        items = list(parts)
        check_size(items, "this ~ concatenation")
        return "".join(str(p) for p in items)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Statements that capture output into a value are refused: what a template
        prints then streams out, counted (see templates._render_text)."""
        tree = super()._parse(source, name, filename)
        for node in tree.find_all(_CAPTURING):
            if not isinstance(node, nodes.For) or node.recursive:
                kind = "a recursive loop" if isinstance(node, nodes.For) else type(node).__name__
                raise TemplateSyntaxError(f"{kind} is not allowed in templates", node.lineno)
        return tree

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    if len(seq) * times > MAX_TEXT or expanded_size(seq) * times > MAX_TEXT:
                        raise _refuse("a repeated value")
            return left * right
        if operator == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                if len(left) + len(right) > MAX_TEXT:
                    raise _refuse("a joined value")
            return left + right
        if operator == "%":
            if isinstance(left, str):
                check_printf(left)
            return left % right
        if operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                if abs(left) > 1 and right * max(abs(left).bit_length(), 1) > MAX_POWER_BITS:
                    raise SecurityError("the number would be too large")
            return left**right
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(__obj, "__name__", None) in _GROWING_METHODS and isinstance(
            getattr(__obj, "__self__", None), str
        ):
            _check_method(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        check_format(value.__self__)
        return wrapped
