"""How the console shows tasks to a person: list columns that matter for an SMS
(recipient, status, code, duration, deadline), events as sentences, durations.

Times stay ISO 8601 (UTC) in ``<time datetime>``: the page script shows them in the
viewer's local time zone."""

from __future__ import annotations

import datetime as dt
from typing import Any

# Where the shipped processes (and Twilio's callbacks) keep the recipient and status.
_RECIPIENT = ("Number_to", "To", "to", "phone")
_STATUS = ("status", "MessageStatus", "CallStatus", "SmsStatus")


def _ts(value: str | None) -> float | None:
    return dt.datetime.fromisoformat(value).timestamp() if value else None


def duration(seconds: float | None) -> str:
    """1.2 s, 42 s, 3 min 5 s, 2 h 10 min, 3 d 4 h."""
    if seconds is None:
        return ""
    s = max(seconds, 0.0)
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m} min {sec} s" if sec else f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def _first(data: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value = data.get(name)
        if value not in (None, ""):
            return value
    return None


def row(view: dict[str, Any], now: float) -> dict[str, Any]:
    """A task view plus the list columns: recipient, status, code, took, deadline."""
    data = view.get("data") or {}
    created = _ts(view["created_at"]) or now
    finished = _ts(view.get("finished_at"))
    return {
        **view,
        "recipient": _first(data, _RECIPIENT),
        "status": _first(data, _STATUS),
        "code": data.get("code") if data.get("code") not in (None, "") else None,
        "took": duration((finished or now) - created),
        "running": finished is None,
        "deadline": view.get("wake_at"),
        "deadline_in": duration((_ts(view.get("wake_at")) or now) - now)
        if view.get("wake_at")
        else "",
    }


def _by(detail: dict[str, Any]) -> str:
    by = detail.get("by")
    return f" by {by}" if by else ""


def sentence(e: dict[str, Any]) -> str:
    """One event in words (its fields are shown beside it)."""
    kind, d = e["kind"], e.get("detail") or {}
    src, dst = e.get("node_title") or "", e.get("to_title") or ""
    if kind == "created":
        how = d.get("by") or "?"
        return f"Created in {dst} by {how}"
    if kind == "transition":
        if e.get("node_id") == e.get("to_node_id"):
            return f"Back into {dst}"
        return f"Moved on from {src} to {dst}"
    if kind == "time_limit":
        return f"Time limit of {src} reached: on to {dst}"
    if kind == "logic_error":
        return f"A logic in {src} failed: on to {dst}"
    if kind == "retried":
        return f"Retried from {dst}{_by(d)}"
    if kind == "moved":
        return f"Moved by hand from {src} to {dst}{_by(d)}"
    if kind == "cancelled":
        why = f": {d['reason']}" if d.get("reason") else ""
        return f"Cancelled in {src}{_by(d)}{why}"
    if kind in ("callback", "callback_late", "callback_ignored"):
        fields = d.get("fields") or {}
        status = _first(fields, _STATUS)
        what = {
            "callback": "received",
            "callback_late": "arrived after the task finished",
            "callback_ignored": "ignored (the status does not advance)",
        }[kind]
        form = d.get("form") or ""
        return f"{form.capitalize() or 'A'} callback {what}" + (
            f": status {status}" if status else ""
        )
    if kind == "call_process":
        return f"Called process {d.get('process') or '?'} from {src}"
    if kind == "reply":
        return f"Reply {'sent' if 'caller_task_id' in d else 'received'} in {src}"
    if kind == "reply_late":
        return "Reply arrived after the caller moved on"
    if kind == "reply_ignored":
        return "Reply ignored: " + str(d.get("reason") or "")
    if kind == "step_failed":
        return f"Step in {src} failed (attempt {d.get('attempt')}): {d.get('error')}"
    if kind == "twilio_retry":
        return f"Twilio busy: retry {d.get('attempt')} in {d.get('retry_in')} s ({d.get('reason')})"
    if kind == "twilio_paced":
        return "Waiting for the sender's turn (pacing)"
    return str(kind).replace("_", " ").capitalize() + (f" in {src}" if src else "")


def timeline(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events with their sentence and the time since the previous one."""
    out, before = [], None
    for e in events:
        at = _ts(e.get("at"))
        gap = duration(at - before) if at is not None and before is not None else ""
        out.append({**e, "sentence": sentence(e), "gap": gap})
        before = at if at is not None else before
    return out
