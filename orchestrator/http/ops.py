"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from orchestrator.engine.service import Service
from orchestrator.store import callbacks as inbox
from orchestrator.store import processes as process_store
from orchestrator.store import tasks as task_store

T = TypeVar("T")


async def _run(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Database work, run the way the runtime says (see Runtime.run_db)."""
    service: Service = request.app.state.service
    return await service.rt.run_db(fn, *args, **kwargs)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    service: Service = request.app.state.service
    ok = await _run(request, service.rt.db.ping)
    return JSONResponse(
        {"status": "ready" if ok else "database unreachable"}, status_code=200 if ok else 503
    )


def _metrics_text(service: Service, steps: int | None, orphans_purged: int | None = None) -> str:
    lines = [
        "# HELP orchestrator_tasks Tasks by process and state (done split by outcome).",
        "# TYPE orchestrator_tasks gauge",
    ]
    with service.rt.db.read() as conn:
        for proc in process_store.list_processes(conn):
            for state, n in task_store.state_counts(conn, proc.id).items():
                lines.append(f'orchestrator_tasks{{process="{proc.slug}",state="{state}"}} {n}')
        lines += [
            "# HELP orchestrator_callbacks Callbacks in the inbox by status.",
            "# TYPE orchestrator_callbacks gauge",
        ]
        for status, n in sorted(inbox.counts(conn).items()):
            lines.append(f'orchestrator_callbacks{{status="{status}"}} {n}')
        lines += [
            "# HELP orchestrator_orphan_callbacks Callbacks waiting for a task that has "
            "not (yet) recorded their sid or ref.",
            "# TYPE orchestrator_orphan_callbacks gauge",
            f"orchestrator_orphan_callbacks {inbox.orphan_count(conn)}",
        ]
    if orphans_purged is not None:
        lines += [
            "# HELP orchestrator_orphan_callbacks_purged_total Orphan callbacks this process "
            "deleted (past ORCH_ORPHAN_CALLBACK_TTL or beyond ORCH_ORPHAN_CALLBACK_MAX).",
            "# TYPE orchestrator_orphan_callbacks_purged_total counter",
            f"orchestrator_orphan_callbacks_purged_total {orphans_purged}",
        ]
    if steps is not None:
        lines += [
            "# HELP orchestrator_engine_steps_total Node transitions run by this process.",
            "# TYPE orchestrator_engine_steps_total counter",
            f"orchestrator_engine_steps_total {steps}",
        ]
    return "\n".join(lines) + "\n"


async def metrics(request: Request) -> PlainTextResponse:
    service: Service = request.app.state.service
    worker = getattr(request.app.state, "worker", None)
    text = await _run(
        request,
        _metrics_text,
        service,
        worker.steps if worker else None,
        worker.orphans.purged if worker else None,
    )
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
