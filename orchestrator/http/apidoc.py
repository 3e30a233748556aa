"""The OpenAPI document served at /api/v1/openapi.json: /api/v1 (http/openapi.py), plus
the callback URLs of wait nodes, the Corezoid-compatible API, health and metrics, the
request an ``api_call`` logic sends (an OpenAPI 3.1 webhook), and every deployed
process's declared inputs."""

from __future__ import annotations

import copy
import re
from typing import Any

from orchestrator.http.openapi import OPENAPI, _json, _ref

_NO_AUTH: list[dict[str, list[str]]] = []  # authenticated by URL hash or signature
_CALLBACK_ANSWER = _json(
    {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["accepted", "duplicate"]},
            "callback_id": {"type": "integer"},
        },
    },
    "Stored (applied to its task moments later), or a duplicate acknowledged again",
)
_CALLBACK_ERRORS = {
    "400": _json(_ref("Error"), "The body is not valid JSON or form data"),
    "403": _json(_ref("Error"), "Twilio form: X-Twilio-Signature missing or wrong"),
    "404": _json(_ref("Error"), "Unknown callback URL (conv_id or hash) or task"),
    "413": _json(_ref("Error"), "Body over ORCH_MAX_REQUEST_BYTES"),
    "415": _json(_ref("Error"), "Wrong content type for this form"),
    "422": _json(_ref("Error"), "No task_id/ref (JSON) or MessageSid/CallSid (Twilio)"),
}


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


_CONV = _path("conv_id", "the process's conv_id")
_HASH = _path("hash", "the wait node's hash (a credential: keep the URL secret)")
_FORM = "application/x-www-form-urlencoded"


def _callback(op_id: str, summary: str, description: str, **op: Any) -> dict[str, Any]:
    return {
        "post": {
            "operationId": op_id,
            "tags": ["Callbacks"],
            "summary": summary,
            "description": description
            + " Copy the URL from `GET /api/v1/processes/{process}` (`callback_urls`).",
            "security": _NO_AUTH,
            "responses": {"200": _CALLBACK_ANSWER, **_CALLBACK_ERRORS},
            **op,
        }
    }


TWILIO_FIELDS = {
    "type": "object",
    "required": ["AccountSid"],
    "additionalProperties": {"type": "string"},
    "properties": {
        name: {"type": "string"}
        for name in (
            "AccountSid",
            "MessageSid",
            "SmsSid",
            "MessageStatus",
            "CallSid",
            "CallStatus",
            "ErrorCode",
            "ErrorMessage",
            "To",
            "From",
            "SequenceNumber",
        )
    },
}

EXTRA_PATHS: dict[str, Any] = {
    "/api/1/json/callback/{conv_id}/{hash}": _callback(
        "jsonCallback",
        "Callback to a wait node (JSON)",
        "A JSON object naming its task by `task_id` or `ref`; its other fields are merged "
        "into the task's data and the task goes on. An `Idempotency-Key` header makes a "
        "retry count once.",
        parameters=[
            _CONV,
            _HASH,
            {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
        ],
        requestBody={
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"task_id": {"type": "string"}, "ref": {"type": "string"}},
                    }
                }
            },
        },
    ),
    "/api/1/json/plugins/twilio/{conv_id}/{hash}": _callback(
        "twilioStatusCallback",
        "Twilio status callback (Twilio plugin form)",
        "What Twilio POSTs to a `StatusCallback`: form fields signed with the account's "
        "auth token (`X-Twilio-Signature`, checked against the URL built on "
        "ORCH_PUBLIC_URL). The task is found by `ref` = MessageSid (or CallSid); lower "
        "statuses arriving late never overwrite higher ones.",
        parameters=[
            _CONV,
            _HASH,
            {
                "name": "X-Twilio-Signature",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            },
            {"name": "I-Twilio-Idempotency-Token", "in": "header", "schema": {"type": "string"}},
        ],
        requestBody={"required": True, "content": {_FORM: {"schema": TWILIO_FIELDS}}},
    ),
    "/api/1/nvp/callback/{conv_id}/{hash}/{task_id}": _callback(
        "nvpCallback",
        "Callback to a wait node (name=value form)",
        "Form fields (`application/x-www-form-urlencoded`) for the task named in the path; "
        "the URL's last segment is the template `{{root.task_id}}` in process files.",
        parameters=[_CONV, _HASH, _path("task_id", "the task's id")],
        requestBody={
            "required": True,
            "content": {
                _FORM: {"schema": {"type": "object", "additionalProperties": {"type": "string"}}}
            },
        },
    ),
    "/api/{api_version}/json/{login}/{time}/{signature}": {
        "post": {
            "operationId": "corezoidApi",
            "tags": ["Corezoid API"],
            "summary": "Corezoid-compatible task API (create, modify, show)",
            "description": "For existing Corezoid clients (docs/corezoid-api.md). "
            "`signature` = hex(sha1(time + secret + raw body + secret)) with an API key's "
            "login and secret; `time` (Unix seconds, as written) must be within "
            "ORCH_COREZOID_TIME_WINDOW of the server's clock, and each signed request is "
            "accepted once. Each op is answered in order with its `proc`.",
            "security": _NO_AUTH,
            "parameters": [
                {
                    "name": "api_version",
                    "in": "path",
                    "required": True,
                    "schema": {"enum": ["1", "2"]},
                },
                _path("login", "the API key's login"),
                _path("time", "Unix seconds, exactly as signed"),
                _path("signature", "hex SHA-1, see above"),
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["ops"],
                            "properties": {
                                "ops": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 100,
                                    "items": {
                                        "type": "object",
                                        "required": ["type", "obj", "conv_id"],
                                        "properties": {
                                            "id": {"type": "string"},
                                            "type": {"enum": ["create", "modify", "show"]},
                                            "obj": {"const": "task"},
                                            "conv_id": {"type": ["integer", "string"]},
                                            "ref": {"type": "string"},
                                            "obj_id": {"type": "string"},
                                            "data": {"type": "object"},
                                        },
                                    },
                                }
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "request_proc": {"type": "string"},
                            "ops": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                    "Each op's answer (`proc`: ok, not_found_task, not_unical_ref…)",
                ),
                "403": _json(
                    {"type": "object"},
                    "Unknown login, wrong signature, stale "
                    "time or a replay (`request_proc: access_denied`)",
                ),
                "413": _json(_ref("Error"), "Body over ORCH_MAX_REQUEST_BYTES"),
            },
        }
    },
    "/healthz": {
        "get": {
            "operationId": "health",
            "tags": ["Operations"],
            "summary": "Liveness",
            "description": "200 while the process serves requests.",
            "security": _NO_AUTH,
            "responses": {"200": _json({"type": "object"})},
        }
    },
    "/readyz": {
        "get": {
            "operationId": "ready",
            "tags": ["Operations"],
            "summary": "Readiness",
            "description": "200 when the database answers, else 503.",
            "security": _NO_AUTH,
            "responses": {
                "200": _json({"type": "object"}),
                "503": _json({"type": "object"}, "Database unreachable"),
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "tags": ["Operations"],
            "summary": "Prometheus metrics",
            "description": "This process's metrics in Prometheus' text format: HTTP latency by "
            "route, Twilio requests by action/outcome/code, callbacks by result and refusal "
            "reason, task durations, engine step latency, runnable tasks and pending "
            "callbacks per process, CPU and memory.",
            "security": _NO_AUTH,
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
}

WEBHOOKS: dict[str, Any] = {
    "apiCall": {
        "post": {
            "summary": "A request sent by an `api_call` logic",
            "description": "A process's `api_call` logic sends its request (method, URL, "
            "headers and JSON body from the process file) to your API. Every attempt of "
            "one step carries the same `Idempotency-Key`; after a crash a POST/PATCH is "
            "not sent again. Your answer's fields are saved into the task (see "
            "docs/process-format.md).",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                }
            ],
            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {"200": {"description": "Any 2xx: the logic succeeds"}},
        }
    }
}


def _schema_name(slug: str) -> str:
    return "Inputs_" + re.sub(r"[^A-Za-z0-9_.-]", "_", slug)


def document(processes: list[dict[str, Any]]) -> dict[str, Any]:
    """The served document; ``processes``: slug, title, description, inputs of each."""
    doc = copy.deepcopy(OPENAPI)
    doc["paths"].update(copy.deepcopy(EXTRA_PATHS))
    doc["webhooks"] = copy.deepcopy(WEBHOOKS)
    create = doc["paths"]["/api/v1/processes/{process}/tasks"]["post"]
    rows, examples = [], {}
    for p in processes:
        inputs = [i for i in p["inputs"] if isinstance(i.get("name"), str)]
        name = _schema_name(p["slug"])
        doc["components"]["schemas"][name] = {
            "type": "object",
            "title": p["title"],
            "description": p["description"] or f"Inputs of {p['title']}",
            "properties": {
                i["name"]: {"description": str(i.get("description", ""))} for i in inputs
            },
            "required": [i["name"] for i in inputs if i.get("required")],
        }
        fields = ", ".join(f"`{i['name']}`{'*' if i.get('required') else ''}" for i in inputs)
        rows.append(f"| `{p['slug']}` | {p['title']} | {fields or '—'} |")
        examples[p["slug"]] = {
            "summary": p["title"],
            "description": f"`data` follows the {name} schema",
            "value": {
                "ref": f"{p['slug']}-1",
                "data": {i["name"]: "…" for i in inputs if i.get("required")},
            },
        }
    if rows:
        create["description"] += (
            "\n\n| process | title | inputs (* required) |\n|---|---|---|\n" + "\n".join(rows)
        )
        create["requestBody"]["content"]["application/json"]["examples"] = examples
    return doc
