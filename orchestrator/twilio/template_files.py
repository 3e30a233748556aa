"""Message bodies from template files shipped beside the processes (seed 004).

A ``twilio`` logic's ``BodyTemplate`` names a file in ``processes/templates/``; its text is
rendered like any ``{{ template }}`` (Jinja's immutable sandbox, no includes), over the
task data or, for ``send_to_many``, over ``metadata``. A name that is missing, unreadable
or would leave that directory is ``TEMPLATE_READ_ERROR``: the task escalates and nothing
is sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator import resources
from orchestrator.engine.templates import TemplateError, render
from orchestrator.twilio import inputs as check

TEMPLATES_DIR = "templates"
MAX_TEMPLATE_BYTES = 64 * 1024
# One file name: no directories, no leading dot (so no "..", no hidden files).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


def shipped_processes_dir() -> Path:
    """Where the shipped processes (and their ``templates/``) are."""
    return resources.processes_dir()


def read_template(processes_dir: Path, name: str) -> str:
    """The text of template ``name`` in ``processes_dir/templates``, or TEMPLATE_READ_ERROR."""
    if not _NAME.match(name) or ".." in name:
        raise TemplateError("TEMPLATE_READ_ERROR", f"{name!r} is not a template file name")
    folder = (processes_dir / TEMPLATES_DIR).resolve()
    path = (folder / name).resolve()
    if path.parent != folder:
        raise TemplateError("TEMPLATE_READ_ERROR", f"{name!r} is not in {TEMPLATES_DIR}/")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_TEMPLATE_BYTES + 1)
        if len(data) > MAX_TEMPLATE_BYTES:
            raise TemplateError(
                "TEMPLATE_READ_ERROR", f"{name!r} is over {MAX_TEMPLATE_BYTES} bytes"
            )
        return data.decode("utf-8")
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise TemplateError("TEMPLATE_READ_ERROR", f"cannot read template {name!r}: {why}") from exc
    except UnicodeDecodeError as exc:
        raise TemplateError("TEMPLATE_READ_ERROR", f"template {name!r} is not UTF-8") from exc


def with_template_body(
    raw: Mapping[str, Any], params: Mapping[str, Any], context: Mapping[str, Any], *, bulk: bool
) -> dict[str, Any]:
    """``params`` with ``Body`` taken from ``BodyTemplate`` when one is named. A bulk send
    keeps the text as its ``Body`` template (it is rendered per ``metadata`` later)."""
    out = dict(params)
    name = out.pop("BodyTemplate", None)
    if name is None or name == "":
        return out
    if out.get("Body") not in (None, ""):
        raise check.invalid(raw, "BodyTemplate", "cannot be given with a Body")
    text = read_template(shipped_processes_dir(), str(name))
    out["Body"] = text if bulk else str(render(text, context))
    return out
