"""The console's opt-outs page (SPEC §10): who texted STOP to which of our numbers."""

from __future__ import annotations

from starlette.responses import Response

from orchestrator.http.console.access import Visit, page

PAGE_SIZE = 200


@page()
async def opt_outs(v: Visit) -> Response:
    recipient = v.request.query_params.get("recipient", "").strip()[:64] or None
    rows = await v.service.opt_outs(recipient=recipient, limit=PAGE_SIZE)
    return v.render("opt_outs.html", rows=rows, recipient=recipient or "", limit=PAGE_SIZE)
