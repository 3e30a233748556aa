"""OpenAPI paths of seed 003's Twilio package API (``/api/twilio/…``), merged into the
document of http/openapi.py."""

from __future__ import annotations

from typing import Any

_FIELDS = {
    "accountSid": "AC… (default: TWILIO_ACCOUNT_SID)",
    "accountToken": "the account's auth token (default: TWILIO_AUTH_TOKEN); never stored",
    "from": "your Twilio number or verified caller ID (E.164)",
    "to": "the recipient (E.164; typed forms such as +1 555 123 0001 are normalised)",
    "body": "message text, up to 1600 characters",
    "messagingServiceSid": "MG… instead of from",
    "mediaUrl": "media URL (or a list of up to 10)",
    "url": "TwiML URL Twilio fetches when the call connects",
    "applicationSid": "AP… instead of url",
}
_TAKES = {
    "sendSms": ("Send an SMS (a Sending SMS task)", ["from", "to", "body", "messagingServiceSid"]),
    "sendMms": (
        "Send an MMS (a Sending SMS task)",
        ["from", "to", "body", "messagingServiceSid", "mediaUrl"],
    ),
    "makeCall": ("Place a call (a Voice call task)", ["from", "to", "url", "applicationSid"]),
}
_ANSWER = {
    "type": "object",
    "properties": {
        "callback": {"enum": ["success", "error"]},
        "contextWrites": {
            "type": "object",
            "properties": {
                "to": {
                    "description": "success: Twilio's resource plus task_id; error: "
                    "'[HTTP 400] Unable to create record: …' or 'MISSING_INPUT: …'",
                    "oneOf": [{"type": "object"}, {"type": "string"}],
                }
            },
        },
        "task_id": {"type": "string", "description": "on an error after the task was created"},
    },
}


def _operation(name: str) -> dict[str, Any]:
    summary, fields = _TAKES[name]
    properties: dict[str, Any] = {
        f: {"type": "string", "description": _FIELDS[f]}
        for f in ["accountSid", "accountToken", *fields]
    }
    if name == "sendMms":
        properties["mediaUrl"] = {
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            "description": _FIELDS["mediaUrl"],
        }
    return {
        "post": {
            "operationId": f"twilioPackage{name[0].upper()}{name[1:]}",
            "summary": summary,
            "description": "Seed 003's Twilio package: answers once Twilio answered the "
            "create (docs/seed-003-api.md).",
            "tags": ["twilio-package"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": properties,
                            "additionalProperties": False,
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "success, or the package's error shape",
                    "content": {"application/json": {"schema": _ANSWER}},
                },
                "504": {
                    "description": "Twilio did not answer in time; the task goes on",
                    "content": {"application/json": {"schema": _ANSWER}},
                },
            },
        }
    }


TWILIO_PACKAGE_PATHS: dict[str, Any] = {f"/api/twilio/{name}": _operation(name) for name in _TAKES}
