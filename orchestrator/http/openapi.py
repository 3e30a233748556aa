"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from orchestrator.http.openapi_repair import REPAIR_PATHS
from orchestrator.http.openapi_twilio_package import TWILIO_PACKAGE_PATHS


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = _json(_ref("Error"), "Error")
_ERRORS = {str(code): _ERR for code in (400, 404, 409, 413, 415, 422)}
_PROCESS_PARAM = {
    "name": "process",
    "in": "path",
    "required": True,
    "description": "conv_id or slug",
    "schema": {"type": "string"},
}
_TASK_PARAM = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "orchestrator",
        "version": "1",
        "description": "Submit tasks to processes, inspect and modify them; the callback "
        "URLs of wait nodes, the Corezoid-compatible API and the health and metrics "
        "endpoints are described too. `/api/v1` takes `Authorization: Bearer <secret>` "
        "once any API key exists (`orchestrator apikey create`); without one, only "
        "loopback clients may call it.",
    },
    "paths": {
        "/api/v1/processes": {
            "get": {
                "operationId": "listProcesses",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "processes": {"type": "array", "items": _ref("ProcessSummary")}
                            },
                        }
                    )
                },
            },
            "post": {
                "operationId": "deployProcess",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": _json({"type": "object"}),
                    "201": _json({"type": "object"}),
                    **_ERRORS,
                },
            },
        },
        "/api/v1/processes/{process}": {
            "get": {
                "operationId": "getProcess",
                "parameters": [_PROCESS_PARAM],
                "responses": {"200": _json(_ref("Process")), "404": _ERR},
            }
        },
        "/api/v1/processes/{process}/tasks": {
            "post": {
                "operationId": "createTask",
                "parameters": [_PROCESS_PARAM],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("NewTask")}},
                },
                "responses": {
                    "201": _json(_ref("Task"), "Created"),
                    "200": _json(_ref("Task"), "Existing task (same ref, same data)"),
                    **_ERRORS,
                },
            },
            "get": {
                "operationId": "listTasks",
                "parameters": [
                    _PROCESS_PARAM,
                    _query("ref", {"type": "string"}),
                    _query("node", {"type": "string"}),
                    _query("state", {"enum": ["active", "waiting", "done"]}),
                    _query("outcome", {"enum": ["success", "escalation"]}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                    _query("cursor", {"type": "string"}),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "tasks": {"type": "array", "items": _ref("Task")},
                                "next_cursor": {"type": ["string", "null"]},
                            },
                        }
                    ),
                    **_ERRORS,
                },
            },
        },
        "/api/v1/processes/{process}/tasks/{ref}": {
            "patch": {
                "operationId": "modifyTaskByRef",
                "parameters": [
                    _PROCESS_PARAM,
                    {"name": "ref", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["data"],
                                "additionalProperties": False,
                                "properties": {"data": {"type": "object"}},
                            }
                        }
                    },
                },
                "responses": {"200": _json(_ref("Task")), **_ERRORS},
            }
        },
        "/api/v1/tasks/{task_id}": {
            "get": {
                "operationId": "getTask",
                "parameters": [_TASK_PARAM],
                "responses": {"200": _json(_ref("Task")), "404": _ERR},
            }
        },
        "/api/v1/tasks/{task_id}/history": {
            "get": {
                "operationId": "getTaskHistory",
                "parameters": [_TASK_PARAM],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "task_id": {"type": "string"},
                                "events": {"type": "array", "items": _ref("Event")},
                            },
                        }
                    ),
                    "404": _ERR,
                },
            }
        },
        "/api/v1/opt-outs": {
            "get": {
                "operationId": "listOptOuts",
                "description": "Recipients who texted an opt-out keyword (STOP, …) to one of "
                "our senders, or whom Twilio refused with 21610; newest first. Sends to "
                "these pairs escalate with code OPTED_OUT.",
                "parameters": [
                    _query("recipient", {"type": "string"}),
                    _query("sender", {"type": "string"}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"opt_outs": {"type": "array", "items": _ref("OptOut")}},
                        }
                    ),
                    "422": _ERR,
                },
            }
        },
    },
    # Required once any API key exists; without one, loopback clients need none.
    "security": [{"bearer": []}, {}],
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "an API key's secret (`orchestrator apikey create`)",
            }
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "details": {},
                        },
                    }
                },
            },
            "NewTask": {
                "type": "object",
                "required": ["data"],
                "additionalProperties": False,
                "properties": {
                    "ref": {"type": "string", "minLength": 1, "maxLength": 255},
                    "data": {"type": "object"},
                },
            },
            "Task": {
                "type": "object",
                "properties": {
                    "task_id": {"type": "string"},
                    "process": {"type": "string"},
                    "conv_id": {"type": "integer"},
                    "version": {"type": "integer"},
                    "ref": {"type": ["string", "null"]},
                    "node": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "title": {"type": "string"},
                            "kind": {"type": ["string", "null"]},
                        },
                    },
                    "state": {"enum": ["active", "waiting", "done"]},
                    "outcome": {"enum": ["success", "escalation", None]},
                    "data": {"type": "object"},
                    "created_at": {"type": "string"},
                    "updated_at": {"type": "string"},
                    "finished_at": {"type": ["string", "null"]},
                },
            },
            "Event": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "at": {"type": "string"},
                    "kind": {"type": "string"},
                    "node_id": {"type": ["string", "null"]},
                    "to_node_id": {"type": ["string", "null"]},
                    "detail": {},
                },
            },
            "OptOut": {
                "type": "object",
                "properties": {
                    "recipient": {"type": "string"},
                    "sender": {"type": "string"},
                    "source": {"type": "string", "description": "keyword:STOP, twilio:21610, …"},
                    "created_at": {"type": "string"},
                },
            },
            "ProcessSummary": {
                "type": "object",
                "properties": {
                    "conv_id": {"type": "integer"},
                    "slug": {"type": "string"},
                    "title": {"type": "string"},
                    "version": {"type": "integer"},
                    "counts": {"type": "object"},
                },
            },
            "Process": {
                "allOf": [
                    _ref("ProcessSummary"),
                    {
                        "type": "object",
                        "properties": {
                            "nodes": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "id": {"type": "string"},
                                        "title": {"type": "string"},
                                        "kind": {"type": "string"},
                                        "count": {"type": "integer"},
                                        "callback_urls": {
                                            "type": "object",
                                            "properties": {
                                                "json": {"type": "string"},
                                                "twilio": {"type": "string"},
                                                "nvp": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            }
                        },
                    },
                ]
            },
        },
    },
}

OPENAPI["paths"].update(REPAIR_PATHS)
OPENAPI["paths"].update(TWILIO_PACKAGE_PATHS)

# Tag, summary and description of every /api/v1 operation, by operationId.
OPERATIONS: dict[str, tuple[str, str, str]] = {
    "listProcesses": (
        "Processes",
        "List processes",
        "Every deployed process with its current version and its task counts (active, "
        "waiting, success, escalation).",
    ),
    "deployProcess": (
        "Processes",
        "Deploy process definitions",
        "Deploy one definition (an object) or several (an array) in the process file format "
        "(docs/process-format.md) as new versions. An unchanged definition keeps its version "
        "(200); any new version answers 201. Errors name the node and field, and deploy "
        "nothing.",
    ),
    "getProcess": (
        "Processes",
        "Show a process",
        "A process by slug or conv_id: its nodes with their task counters, the callback URLs "
        "of each wait node (JSON, Twilio plugin and NVP forms, built on the URL this server "
        "really uses), its declared inputs and its versions.",
    ),
    "createTask": (
        "Tasks",
        "Create a task",
        "Start a task in a process with `data` (the process's declared inputs are listed "
        "below). A repeated request with the same `ref` and data returns the existing task "
        "(200); the same `ref` with other data while that task is unfinished is refused "
        "(409). Parameters named like secrets (`AuthToken`, `password`…) are kept encrypted "
        "beside the task and never returned.",
    ),
    "listTasks": (
        "Tasks",
        "List a process's tasks",
        "Newest first, filtered by ref, node, state and outcome; page with `limit` and the "
        "`next_cursor` of the previous page.",
    ),
    "modifyTaskByRef": (
        "Tasks",
        "Modify a waiting task (Corezoid's modify)",
        "Merge `data` into the unfinished task with this ref, as a callback would, and let "
        "it go on from the node where it waits.",
    ),
    "getTask": (
        "Tasks",
        "Show a task",
        "Node, state, outcome and data (secrets redacted).",
    ),
    "listOptOuts": (
        "Two-way SMS",
        "List opt-outs",
        "Recipients who texted an opt-out keyword (STOP, UNSUBSCRIBE…) to a sender, newest "
        "first, filtered by `recipient` and `sender`. A send to such a pair ends at once in "
        "escalation `OPTED_OUT` with no request to Twilio; START, YES or UNSTOP remove it.",
    ),
    "getTaskHistory": (
        "Tasks",
        "A task's history",
        "Every transition, each callback with its raw fields, every logic error and Twilio "
        "retry, oldest first.",
    ),
}

for _item in OPENAPI["paths"].values():
    for _op in _item.values():
        # An operation may carry its own; tests/integration/test_api_docs.py fails any left without.
        if _op.get("operationId") in OPERATIONS:
            _tag, _op["summary"], _op["description"] = OPERATIONS[_op["operationId"]]
            _op["tags"] = [_tag]
        # Every operation can be refused before it runs (http/auth.py).
        _op["responses"].setdefault(
            "401", _json(_ref("Error"), "No API key, or an unknown or revoked one")
        )
        _op["responses"].setdefault(
            "403", _json(_ref("Error"), "No API key is configured and the client is not local")
        )
