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
    "retry": "Retry a task from a node",
    "cancel": "Cancel an unfinished task",
    "move": "Move an unfinished task to another node",
}
_DESCRIPTION = {
    "retry": "Run a finished or stuck task again from `node` (default: the node that led to "
    "its end). Refused with ALREADY_SENT if that node already sent something (a message or a "
    "call): name the node to send again. Recorded in the task's history with the key's login.",
    "cancel": "End a task that is not in a final node in an escalation node with "
    "`code=CANCELLED` and the given reason. Recorded in the task's history.",
    "move": "Put an unfinished task in another node; it runs that node from the top. Recorded "
    "in the task's history.",
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
            "description": _DESCRIPTION[_action],
            "tags": ["Repair"],
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
            "summary": f"{_SUMMARY[_action]}: every task in a node",
            "description": f"{_DESCRIPTION[_action]} Applied to the node's tasks, at most "
            "`limit` (1-1000) per request; answers how many were touched and skipped (and why), "
            "with a cursor to continue.",
            "tags": ["Repair"],
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
