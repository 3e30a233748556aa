"""The browsable API description at /console/api: Swagger UI (from the swagger-ui-py
package's own files, nothing fetched from elsewhere) showing /api/v1/openapi.json.

It sits behind the console's access rules (its session cookie, or loopback when no key
exists), so the document is served for it at /console/api/openapi.json too; "Try it out"
calls /api/v1 with the key given under "Authorize"."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from orchestrator.http import apidoc
from orchestrator.http.console.access import SECURITY_HEADERS, Visit, page

HERE = Path(__file__).parent
SCRIPT = (HERE / "apipage.js").read_bytes()
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>orchestrator API</title>
<link rel="icon" href="/console/api/assets/favicon-32x32.png">
<link rel="stylesheet" href="/console/api/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-url="/console/api/openapi.json"></div>
<script src="/console/api/assets/swagger-ui-bundle.js"></script>
<script src="/console/api/page.js"></script>
</body>
</html>
"""


def swagger_ui_dir() -> Path:
    """swagger-ui-py's static files, found without importing it (its package imports
    every web framework adapter it has)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is missing (pip install swagger-ui-py)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@page()
async def api_page(v: Visit) -> Response:
    return HTMLResponse(PAGE, headers=SECURITY_HEADERS)


@page()
async def api_document(v: Visit) -> Response:
    processes = await v.service.process_inputs()
    return JSONResponse(apidoc.document(processes), headers={"Cache-Control": "no-store"})


async def page_script(_request: object) -> Response:
    return Response(SCRIPT, media_type="text/javascript", headers=SECURITY_HEADERS)


routes = [
    Route("/console/api", api_page, methods=["GET"]),
    Route("/console/api/openapi.json", api_document, methods=["GET"]),
    Route("/console/api/page.js", page_script, methods=["GET"]),
    Mount("/console/api/assets", StaticFiles(directory=str(swagger_ui_dir())), name="swagger-ui"),
]
