"""The published JSON Schema of process files (``process.schema.json``), used at deploy.

The schema says what an editor can check on its own (keys, types, enums); the engine's
own checks (``definition.py``) run first and add what a schema cannot say (links,
reachability, exits). A schema error is reported like the others: file, node, field.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from orchestrator.engine.definition import DefinitionError


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    text = resources.files("orchestrator.engine").joinpath("process.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def check(raw: Any, *, file: str | None = None) -> None:
    """Raise DefinitionError for the most relevant way ``raw`` breaks the schema."""
    error = best_match(_validator().iter_errors(raw))
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
