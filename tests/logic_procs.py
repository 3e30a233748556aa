"""Small process definitions shared by the tests of single logics."""

from __future__ import annotations

from typing import Any


def one_node(slug: str, *logics: dict[str, Any], **node: Any) -> dict[str, Any]:
    """start → work (the given logics, then go ok; errors → failed); an ``other`` success
    node exists when a logic goes there."""
    definition: dict[str, Any] = {
        "slug": slug,
        "title": slug,
        "nodes": {
            "start": {"kind": "start", "logics": [{"type": "go", "to": "work"}]},
            "work": {
                "on_error": "failed",
                "logics": [*logics, {"type": "go", "to": "ok"}],
                **node,
            },
            "ok": {"kind": "success"},
            "failed": {"kind": "escalation"},
        },
    }
    if any(lg.get("to") == "other" for lg in logics):
        definition["nodes"]["other"] = {"kind": "success"}
    return definition


# A process whose tasks wait until a callback or modification releases them.
SINK = {
    "slug": "sink",
    "title": "Sink",
    "nodes": {
        "start": {"kind": "start", "logics": [{"type": "go", "to": "hold"}]},
        "hold": {
            "kind": "wait",
            "logics": [{"type": "wait_callback"}, {"type": "go", "to": "done"}],
        },
        "done": {"kind": "success"},
        "bad": {"kind": "escalation"},
    },
}
