"""The console's routes (Corezoid's View mode for operators), mounted at /console."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from orchestrator.http.console import forms, operate, optouts, pages
from orchestrator.http.console.access import HERE


async def _home(request: Request) -> RedirectResponse:
    return RedirectResponse("/console", status_code=307)


routes = [
    Route("/", _home, methods=["GET"]),
    Route("/console", pages.processes, methods=["GET"]),
    Route("/console/search", pages.search, methods=["GET"]),
    Route("/console/opt-outs", optouts.opt_outs, methods=["GET"]),
    Route("/console/login", forms.login, methods=["GET", "POST"]),
    Route("/console/logout", forms.logout, methods=["POST"]),
    Route("/console/tasks/{task_id}", pages.task, methods=["GET"]),
    Route("/console/tasks/{task_id}/live.json", pages.task_live, methods=["GET"]),
    Route("/console/tasks/{task_id}/repair", operate.task_action, methods=["POST"]),
    Route("/console/processes/{process}", pages.process, methods=["GET"]),
    Route("/console/processes/{process}/counts.json", pages.counts, methods=["GET"]),
    Route("/console/processes/{process}/new", forms.new_task, methods=["GET", "POST"]),
    Route("/console/processes/{process}/modify", forms.modify, methods=["GET", "POST"]),
    Route("/console/processes/{process}/tasks", pages.tasks, methods=["GET"]),
    Route("/console/processes/{process}/nodes/{node}", pages.node_tasks, methods=["GET"]),
    Route(
        "/console/processes/{process}/nodes/{node}/bulk",
        operate.node_bulk,
        methods=["GET", "POST"],
    ),
    Mount("/console/static", StaticFiles(directory=str(HERE / "static")), name="console-static"),
]
