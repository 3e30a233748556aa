"""Console forms: a new task, Corezoid's Modify (ref + parameters), log in and out.
Every form carries the session's CSRF token; errors are shown beside their fields."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from orchestrator import jsontext
from orchestrator.http import auth
from orchestrator.http.console import session as sessions
from orchestrator.http.console.access import Visit, page
from orchestrator.http.console.throttle import LoginThrottle
from orchestrator.secretdata import is_secret_name
from orchestrator.services.errors import ServiceError

# Which field an engine refusal belongs beside.
_FIELD_OF = {
    "INVALID_REF": "ref",
    "REF_CONFLICT": "ref",
    "TASK_NOT_FOUND": "ref",
    "TASK_NOT_WAITING": "ref",
    "INVALID_DATA": "data",
    "TASK_TOO_LARGE": "data",
}


def _parse_value(raw: str) -> Any:
    """A field as typed, except JSON lists and objects (e.g. MediaUrl) which are parsed."""
    text = raw.strip()
    if text[:1] in ("[", "{"):
        try:
            return jsontext.loads(text)
        except ValueError:
            return raw
    return raw


def _json_object(raw: str, errors: dict[str, str], field: str) -> dict[str, Any] | None:
    try:
        # As the API reads it: no NaN or Infinity, no runaway nesting.
        value = jsontext.loads(raw)
    except json.JSONDecodeError as exc:
        errors[field] = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        return None
    except ValueError as exc:
        errors[field] = f"not valid JSON: {exc}"
        return None
    if not isinstance(value, dict):
        errors[field] = 'must be a JSON object, like {"name": "value"}'
        return None
    return value


def _parameters(raw: str, errors: dict[str, str]) -> dict[str, Any] | None:
    """Modify's parameters: a JSON object, or one ``name = value`` per line (values as
    typed, except JSON lists and objects)."""
    if raw.strip().startswith("{") or not raw.strip():
        return _json_object(raw, errors, "data")
    data: dict[str, Any] = {}
    for n, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            errors["data"] = f"line {n} is not name = value (or give a JSON object)"
            return None
        data[name.strip()] = _parse_value(value.strip())
    return data


def _task_data(inputs: list[dict[str, Any]], form: dict[str, str], errors: dict[str, str]) -> Any:
    if form.get("data", "").strip():
        return _json_object(form["data"], errors, "data")
    data: dict[str, Any] = {}
    for item in inputs:
        name = str(item["name"])
        raw = form.get(f"in_{name}", "")
        if raw.strip():
            data[name] = _parse_value(raw)
        elif item.get("required"):
            errors[f"in_{name}"] = f"{name} is required"
    if not data and not errors:
        errors["data"] = "fill in the fields or give the data as JSON"
    return data


@page()
async def new_task(v: Visit) -> Response:
    view = await v.service.process_view(v.request.path_params["process"])
    inputs = [dict(i) for i in view["inputs"]]
    for item in inputs:
        item["secret"] = is_secret_name(str(item["name"]))
    form: dict[str, str] = {}
    errors: dict[str, str] = {}
    if v.request.method == "POST":
        v.require_operate()
        form = await v.form()
        data = _task_data(inputs, form, errors)
        ref = form.get("ref", "").strip() or None
        if not errors:
            try:
                created, _new = await v.service.create_task(
                    view["slug"],
                    ref,
                    data,
                    source=f"console:{v.session.login or 'local'}",
                )
                return v.redirect(f"/console/tasks/{created['task_id']}")
            except ServiceError as err:
                errors[_FIELD_OF.get(err.code, "form")] = err.message
    # Secrets typed in are never sent back in the page.
    shown = {k: ("" if is_secret_name(k[3:]) else val) for k, val in form.items()}
    # 200 even with errors: a 4xx page is logged as an error in the browser's console.
    return v.render("new_task.html", p=view, inputs=inputs, form=shown, errors=errors)


@page()
async def modify(v: Visit) -> Response:
    view = await v.service.process_view(v.request.path_params["process"])
    form: dict[str, str] = {"ref": v.request.query_params.get("ref", "")}
    errors: dict[str, str] = {}
    if v.request.method == "POST":
        v.require_operate()
        form = await v.form()
        ref = form.get("ref", "").strip()
        if not ref:
            errors["ref"] = "ref is required: the task to modify"
        data = _parameters(form.get("data", ""), errors)
        if not errors and data is not None:
            try:
                task = await v.service.modify_by_ref(
                    view["slug"],
                    ref,
                    data,
                    source=f"console:{v.session.login or 'local'}",
                )
                return v.redirect(f"/console/tasks/{task['task_id']}")
            except ServiceError as err:
                errors[_FIELD_OF.get(err.code, "form")] = err.message
    return v.render("modify.html", p=view, form=form, errors=errors)


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return "/console"


@page(public=True)
async def login(v: Visit) -> Response:
    if not v.keys:
        return v.redirect("/console")
    errors: dict[str, str] = {}
    target = _safe_next(v.request.query_params.get("next"))
    if v.request.method == "POST":
        form = await v.form()
        target = _safe_next(form.get("next"))
        throttle = _throttle(v)
        client = auth.client_ip(v.request)
        wait = throttle.wait_for(client)
        if wait > 0:
            errors["secret"] = f"too many wrong secrets: wait {wait:.0f} s and try again"
            return v.render("login.html", 429, errors=errors, next=target)
        who = await v.access.login_for_secret(form.get("secret", ""))
        if who is not None:
            throttle.succeeded(client)
            sid = await v.access.open_session(who, sessions.LIFETIME)
            v.session, v.fresh = sessions.new_session(who, sid), True
            return v.redirect(target)
        throttle.failed(client)
        errors["secret"] = "no active API key has this secret"
    return v.render("login.html", errors=errors, next=target)


def _throttle(v: Visit) -> LoginThrottle:
    state = v.request.app.state
    throttle: LoginThrottle | None = getattr(state, "console_login_throttle", None)
    if throttle is None:
        throttle = state.console_login_throttle = LoginThrottle()
    return throttle


@page(public=True)
async def logout(v: Visit) -> Response:
    await v.form()
    await v.access.end_session(v.session.sid)
    v.fresh = False
    response = v.redirect("/console/login" if v.keys else "/console")
    sessions.clear_cookie(response)
    return response
