"""The JSON Schema of process files, used at deploy and published for editors.

The schema says what an editor can check on its own (keys, types, enums); the engine's
own checks (``definition.py``) run first and add what a schema cannot say (links,
reachability, exits). A schema error is reported like the others: file, node, field.

It is built from two parts: ``process_core.schema.json`` (the file, its nodes and time
limits, the envelope of a logic) and each declared logic type's fields
(engine/logic_types.py), so a plugin's new type is checked without a change here. The
published ``process.schema.json`` is that schema for the default plugins, written by
``python -m orchestrator.engine.schema > orchestrator/engine/process.schema.json``; a test
keeps it in step.
"""

from __future__ import annotations

import copy
import json
import sys
import threading
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from orchestrator.engine.definition import DefinitionError
from orchestrator.engine.logic_types import NODE_ID, LogicType
from orchestrator.engine.plugins import (
    default_logic_types,
    known_logic_types,
    logic_types_generation,
)


@lru_cache(maxsize=1)
def core_schema() -> dict[str, Any]:
    text = resources.files("orchestrator.engine").joinpath("process_core.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def logic_schema(declared: LogicType) -> dict[str, Any]:
    """The schema of one logic of a declared type: what every logic has, and its own."""
    out: dict[str, Any] = {"type": "object"}
    if declared.description:
        out["description"] = declared.description
    out["properties"] = {
        "type": {"const": declared.name},
        "on_error": NODE_ID,
        "description": {"type": "string"},
        **declared.fields,
    }
    out["required"] = ["type", *declared.required]
    out["additionalProperties"] = declared.open
    return out


def compose(types: Iterable[LogicType]) -> dict[str, Any]:
    """The process file schema for these logic types."""
    out = copy.deepcopy(core_schema())
    defs = out["$defs"]
    declared = list(types)
    defs["logic"] = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": [t.name for t in declared]}},
        "allOf": [
            {
                "if": {"properties": {"type": {"const": t.name}}, "required": ["type"]},
                "then": {"$ref": f"#/$defs/{t.name}"},
            }
            for t in declared
        ],
    }
    for t in declared:
        defs[t.name] = logic_schema(t)
    return out


_lock = threading.Lock()
_built: tuple[int, dict[str, Any], Draft202012Validator] | None = None


def _current() -> tuple[dict[str, Any], Draft202012Validator]:
    """The schema of the logic types known now, and its validator (rebuilt when a
    runtime's plugins add types)."""
    global _built
    generation = logic_types_generation()
    with _lock:
        if _built is None or _built[0] != generation:
            built = compose(known_logic_types().values())
            _built = (generation, built, Draft202012Validator(built))
        return _built[1], _built[2]


def schema() -> dict[str, Any]:
    return _current()[0]


def check(raw: Any, *, file: str | None = None) -> None:
    """Raise DefinitionError for the most relevant way ``raw`` breaks the schema."""
    error = best_match(_current()[1].iter_errors(raw))
    if error is None:
        return
    node, field = _where(error)
    raise DefinitionError(f"{_reason(error)} (schema)", file=file, node=node, field=field)


def _where(error: ValidationError) -> tuple[str | None, str | None]:
    path = list(error.absolute_path)
    node: str | None = None
    if len(path) >= 2 and path[0] == "nodes":
        node = str(path[1])
        path = path[2:]
    field = ""
    for part in path:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    return node, field or None


def _reason(error: ValidationError) -> str:
    if error.validator == "additionalProperties" and isinstance(error.schema, dict):
        allowed = sorted(error.schema.get("properties", {}))
        return f"{error.message} (allowed: {', '.join(allowed)})"
    return error.message


def published() -> str:
    """The text of ``process.schema.json``: the schema of the default plugins' types."""
    return json.dumps(compose(default_logic_types()), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(published())
