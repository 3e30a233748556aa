"""OpenAPI paths of the repair endpoints (http/repair.py), merged into http/openapi.py."""

from __future__ import annotations

from typing import Any

_ERR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _path(name: str, description: str = "") -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
    if description:
        p["description"] = description
    return p


_TEXT = {"type": "string", "minLength": 1, "maxLength": 500}
_FIELDS = {
    "retry": {"node": _TEXT},
    "cancel": {"reason": _TEXT, "node": _TEXT},
    "move": {"node": _TEXT},
}
_SUMMARY = {
    "retry": "Run a task again from a node (default: the node that led to its end; "
    "refused with ALREADY_SENT if that node sent something: name it to send again)",
    "cancel": "End an unfinished task in an escalation node with code CANCELLED",
    "move": "Put an unfinished task in another node (it runs that node from the top)",
}
_BULK = {
    "type": "object",
    "properties": {
        "action": {"type": "string"},
        "process": {"type": "string"},
        "node": {"type": "string"},
        "touched": {"type": "integer"},
        "skipped": {"type": "object", "additionalProperties": {"type": "integer"}},
        "examples": {"type": "array", "items": {"type": "object"}},
        "next_cursor": {"type": ["string", "null"]},
    },
}
_ERRORS = {str(code): _json(_ERR, "Error") for code in (400, 404, 409, 415, 422)}


def _body(fields: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": fields, "additionalProperties": False}
    return {"required": False, "content": {"application/json": {"schema": schema}}}


REPAIR_PATHS: dict[str, Any] = {}
for _action, _fields in _FIELDS.items():
    REPAIR_PATHS[f"/api/v1/tasks/{{task_id}}/{_action}"] = {
        "post": {
            "operationId": f"{_action}Task",
            "summary": _SUMMARY[_action],
            "parameters": [_path("task_id")],
            "requestBody": _body(_fields),
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Task"}),
                "403": _json(_ERR, "A read-only key (FORBIDDEN)"),
                **_ERRORS,
            },
        }
    }
    REPAIR_PATHS[f"/api/v1/processes/{{process}}/nodes/{{node}}/{_action}"] = {
        "post": {
            "operationId": f"{_action}NodeTasks",
            "summary": f"{_action.capitalize()} every task in a node, at most `limit` "
            "(1-1000) per request; answers how many were touched and skipped",
            "parameters": [_path("process", "conv_id or slug"), _path("node")],
            "requestBody": _body(
                {
                    **_fields,
                    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "cursor": _TEXT,
                }  # fmt: skip
            ),
            "responses": {
                "200": _json(_BULK),
                "403": _json(_ERR, "A read-only key (FORBIDDEN)"),
                **_ERRORS,
            },
        }
    }
