"""Logging of the ``orchestrator`` commands: plain text or JSON lines (ORCH_LOG_FORMAT),
engine events with their task fields, and an access log that never shows a credential.

Engine code logs with ``extra=task_fields(...)``; the text format appends those fields as
``key=value``, the JSON format (python-json-logger) writes them as keys of the line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

from orchestrator.config import ConfigError

# Fields an engine event may carry (task, process, node, Twilio sid). A LogRecord's own
# ``process`` is the PID: the process's slug travels as ``process_slug`` and is written
# out as ``process``.
TASK_FIELDS = ("task_id", "process_slug", "node", "sid", "outcome", "reason")
SHOWN_AS = {"process_slug": "process"}
FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Credentials in request paths: the hash of a callback URL (…/{conv_id}/{hash}) and the
# signature of a Corezoid API request (…/{login}/{time}/{signature}).
_CALLBACK_HASH = re.compile(
    r"^(/api/1/(?:json/callback|json/plugins/twilio|nvp/callback)/[^/]*/)[^/?]*"
)
_COREZOID_SIGNATURE = re.compile(r"^(/api/[12]/json/[^/]*/[^/]*/)[^/?]*")


def redact_path(path: str) -> str:
    """``path`` (with its query, if any) with any callback hash or API signature hidden."""
    redacted, n = _CALLBACK_HASH.subn(r"\1<hash>", path, count=1)
    if n:
        return redacted
    return _COREZOID_SIGNATURE.sub(r"\1<signature>", path, count=1)


def task_fields(
    task_id: str | None = None,
    process: str | None = None,
    node: str | None = None,
    sid: str | None = None,
    **more: Any,
) -> dict[str, Any]:
    """``extra=`` for a log call about a task (None fields left out)."""
    fields = {"task_id": task_id, "process_slug": process, "node": node, "sid": sid, **more}
    return {k: v for k, v in fields.items() if v is not None}


class AccessLogRedaction(logging.Filter):
    """uvicorn's access log: (client, method, path, http version, status); the path's
    hash or signature is replaced before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = [
            f"{SHOWN_AS.get(k, k)}={getattr(record, k)}" for k in TASK_FIELDS if hasattr(record, k)
        ]
        return f"{text} {' '.join(fields)}" if fields else text


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger", **SHOWN_AS},
    )


def log_format() -> str:
    fmt = (os.environ.get("ORCH_LOG_FORMAT") or "text").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"ORCH_LOG_FORMAT must be text or json, not {fmt!r}")
    return fmt


def configure(verbose: bool = False) -> None:
    """Root handler on stderr in ORCH_LOG_FORMAT at ORCH_LOG_LEVEL (-v: INFO)."""
    fmt = log_format()
    level = (os.environ.get("ORCH_LOG_LEVEL") or ("INFO" if verbose else "WARNING")).upper()
    if level not in LEVELS:
        raise ConfigError(f"ORCH_LOG_LEVEL must be one of {', '.join(LEVELS)}, not {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    if fmt == "json":
        logging.captureWarnings(True)  # no raw warning text between the JSON lines
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogRedaction) for f in access.filters):
        access.addFilter(AccessLogRedaction())


def notice(text: str) -> None:
    """A line for the operator: printed as is in text mode, a log line in JSON mode."""
    if log_format() == "json":
        logging.getLogger("orchestrator").info(text)
    else:
        print(text, flush=True)
