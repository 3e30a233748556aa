"""Console repair: retry, cancel or move a task, or every task of a node after a
confirmation that says how many. Operate keys only (a read key sees no buttons, and a
POST anyway is refused); each action lands in the task's history with the login."""

from __future__ import annotations

from starlette.responses import Response

from orchestrator.http import auth
from orchestrator.http.console.access import Visit, page
from orchestrator.http.errors import http_status
from orchestrator.services.errors import Invalid, NotFound, ServiceError
from orchestrator.services.repair import BULK_MAX, Repair

_VERBS = {"retry": "Retry", "cancel": "Cancel", "move": "Move"}
_DONE = {"retry": "retried", "cancel": "cancelled", "move": "moved"}


def _who(v: Visit) -> str:
    return f"console:{v.session.login or auth.ANONYMOUS}@{auth.client_ip(v.request)}"


def _params(form: dict[str, str]) -> dict[str, str | None]:
    params: dict[str, str | None] = {"node": form.get("node", "").strip() or None}
    if form.get("action") == "cancel":
        params["reason"] = form.get("reason", "").strip()[:500] or None
    return params


@page()
async def task_action(v: Visit) -> Response:
    v.require_operate()
    form = await v.form()
    task_id = v.request.path_params["task_id"]
    action = form.get("action", "")
    if action not in _VERBS:
        raise Invalid("INVALID_ACTION", "choose retry, cancel or move")
    try:
        await Repair(v.service).act(action, task_id, who=_who(v), **_params(form))
    except ServiceError as err:
        return v.render(
            "repair_refused.html",
            http_status(err),
            task_id=task_id,
            action=action,
            verb=_VERBS[action],
            err=err,
        )
    return v.redirect(f"/console/tasks/{task_id}?did={_DONE[action]}")


@page()
async def node_bulk(v: Visit) -> Response:
    v.require_operate()
    key, node_id = v.request.path_params["process"], v.request.path_params["node"]
    view = await v.service.process_view(key)
    node = next((n for n in view["nodes"] if n["id"] == node_id), None)
    if node is None:
        raise NotFound("NODE_NOT_FOUND", f"{view['title']} has no node {node_id!r}")
    if v.request.method == "GET":
        action = v.request.query_params.get("action", "")
        if action not in _VERBS:
            raise Invalid("INVALID_ACTION", "choose retry, cancel or move")
        return v.render(
            "bulk.html",
            p=view,
            node=node,
            action=action,
            verb=_VERBS[action],
            count=node["count"],
            batch=BULK_MAX,
            result=None,
        )
    form = await v.form()
    action = form.get("action", "")
    if action not in _VERBS:
        raise Invalid("INVALID_ACTION", "choose retry, cancel or move")
    result = await Repair(v.service).bulk(
        view["slug"],
        node_id,
        action,
        who=_who(v),
        cursor=form.get("cursor") or None,
        node=_params(form)["node"],
        reason=_params(form).get("reason"),
    )
    return v.render(
        "bulk.html",
        p=view,
        node=node,
        action=action,
        verb=_VERBS[action],
        done=_DONE[action],
        count=node["count"],
        batch=BULK_MAX,
        result=result,
        form=form,
    )
