"""Read-only console pages: processes, a process with its graph, a node's tasks, search,
a task with its timeline, and the counters the process page polls."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import JSONResponse, Response

from orchestrator.http.console import graph, present
from orchestrator.http.console.access import SECURITY_HEADERS, Visit, page
from orchestrator.services import lookup

PAGE_SIZE = 25


@page()
async def processes(v: Visit) -> Response:
    items = await v.service.list_processes()
    return v.render("processes.html", processes=items)


@page()
async def process(v: Visit) -> Response:
    view = await v.service.process_view(v.request.path_params["process"])
    edges = await lookup.edges(v.service, view["slug"])
    svg = graph.render(view["slug"], view["nodes"], edges)
    return v.render("process.html", p=view, svg=svg)


@page()
async def tasks(v: Visit) -> Response:
    """A process's tasks, filtered (lookup.filtered_tasks), newest first, cursor-paged."""
    key = v.request.path_params["process"]
    view = await v.service.process_view(key)
    q = v.request.query_params
    filters = {k: q.get(k, "") for k in lookup.TASK_FILTERS}
    cursor = q.get("cursor") or None
    listing = await lookup.filtered_tasks(v.service, key, filters, limit=PAGE_SIZE, cursor=cursor)
    now = time.time()
    shown = {k: val for k, val in filters.items() if val}
    return v.render(
        "tasks.html",
        p=view,
        filters=filters,
        shown=shown,
        tasks=[present.row(t, now) for t in listing["tasks"]],
        next_cursor=listing["next_cursor"],
        paged=cursor is not None,
    )


# Counters polled by every open process page: one query per process per COUNTS_TTL,
# however many operators watch it.
COUNTS_TTL = 0.5


@page()
async def counts(v: Visit) -> Response:
    state = v.request.app.state
    cache: dict[str, tuple[float, dict[str, Any]]] | None = getattr(state, "console_counts", None)
    if cache is None:
        cache = state.console_counts = {}
    key = v.request.path_params["process"]
    hit = cache.get(key)
    if hit is None or time.monotonic() - hit[0] > COUNTS_TTL:
        view = await v.service.process_view(key)
        body = {"nodes": {n["id"]: n["count"] for n in view["nodes"]}, "counts": view["counts"]}
        if len(cache) > 1000:  # keys come from URLs: keep the cache bounded
            cache.clear()
        hit = cache[key] = (time.monotonic(), body)
    return JSONResponse(hit[1], headers=SECURITY_HEADERS)


@page()
async def node_tasks(v: Visit) -> Response:
    key, node_id = v.request.path_params["process"], v.request.path_params["node"]
    view = await v.service.process_view(key)
    node = next((n for n in view["nodes"] if n["id"] == node_id), None)
    if node is None:
        return v.render(
            "message.html",
            404,
            title="Node not found",
            message=f"{view['title']} has no node {node_id!r}.",
        )
    cursor = v.request.query_params.get("cursor") or None
    listing = await v.service.list_tasks(key, node=node_id, limit=PAGE_SIZE, cursor=cursor)
    now = time.time()
    return v.render(
        "node.html",
        p=view,
        node=node,
        tasks=[present.row(t, now) for t in listing["tasks"]],
        next_cursor=listing["next_cursor"],
        paged=cursor is not None,
    )


@page()
async def search(v: Visit) -> Response:
    q = v.request.query_params.get("q", "")
    result = await lookup.search(v.service, q)
    if len(result["tasks"]) == 1 and q.strip():
        # One hit: go straight to it, as an operator pasting an id expects.
        return v.redirect(f"/console/tasks/{result['tasks'][0]['task_id']}")
    now = time.time()
    result["tasks"] = [present.row(t, now) for t in result["tasks"]]
    return v.render("search.html", q=q, result=result)


@page()
async def task(v: Visit) -> Response:
    t = await lookup.timeline(v.service, v.request.path_params["task_id"])
    nvp_url = None
    if t["task"]["state"] == "waiting" and t["task"]["node"]["kind"] == "wait":
        urls = v.service.callback_urls(t["task"]["conv_id"], t["task"]["node"]["id"])
        nvp_url = urls["nvp"].replace("{{root.task_id}}", t["task"]["task_id"])
    view = present.row(t["task"], time.time())
    nodes = await lookup.node_choices(v.service, view["task_id"])
    return v.render(
        "task.html",
        t=view,
        events=present.timeline(t["events"]),
        children=t["children"],
        nvp_url=nvp_url,
        nodes=nodes,
    )


@page()
async def task_live(v: Visit) -> Response:
    body = await lookup.live_stamp(v.service, v.request.path_params["task_id"])
    return JSONResponse(body, headers=SECURITY_HEADERS)
