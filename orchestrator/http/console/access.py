"""Who may see the console, and the plumbing every console page shares (templates,
the session cookie, CSRF, turning engine errors into pages)."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from orchestrator.http import auth
from orchestrator.http.console import session as sessions
from orchestrator.http.console.session import Session
from orchestrator.http.errors import http_status
from orchestrator.services.access import Access
from orchestrator.services.apikeys import OPERATE, READ
from orchestrator.services.errors import ServiceError
from orchestrator.services.tasks import Service

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
# Links built from task data (url_more_info) only when they are web addresses.
templates.env.tests["web_url"] = lambda v: (
    isinstance(v, str) and v.startswith(("https://", "http://"))
)

# Scripts and styles only from our own static files: no inline script can run.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class Visit:
    request: Request
    service: Service
    access: Access
    session: Session
    fresh: bool  # the cookie must be (re)set on the response
    keys: bool  # API keys are configured: logging in is needed
    role: str = OPERATE  # the logged-in key's role ("operate" in keyless loopback mode)

    @property
    def can_operate(self) -> bool:
        return self.role != READ

    def require_operate(self) -> None:
        """Read-only keys see no action buttons; a POST anyway gets this refusal."""
        if not self.can_operate:
            raise Refused(
                self.render(
                    "message.html",
                    403,
                    title="Not allowed",
                    message=f"The API key {self.session.login} may only read (role read).",
                )
            )

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        context.update(
            request=self.request,
            csrf=self.session.csrf,
            login=self.session.login,
            keys=self.keys,
            can_operate=self.can_operate,
        )
        response = templates.TemplateResponse(
            self.request, template, context, status_code=status, headers=SECURITY_HEADERS
        )
        if self.fresh:
            sessions.set_cookie(response, self.request, self.access.cookie_secret, self.session)
        return response

    def redirect(self, url: str) -> Response:
        response = RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
        if self.fresh:
            sessions.set_cookie(response, self.request, self.access.cookie_secret, self.session)
        return response

    async def form(self) -> dict[str, str]:
        """The url-encoded form (last value wins), after checking its CSRF token."""
        raw = (await self.request.body()).decode("utf-8", "replace")
        fields = dict(parse_qsl(raw, keep_blank_values=True))
        if not sessions.csrf_ok(self.session, fields.pop("csrf", None)):
            raise Refused(
                self.render(
                    "message.html",
                    403,
                    title="Form expired",
                    message="This form is out of date (or came from another site). "
                    "Reload the page and send it again.",
                )
            )
        return fields


class Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


async def _visit(request: Request, *, public: bool) -> Visit:
    service: Service = request.app.state.service
    access: Access = request.app.state.access
    s = sessions.decode(access.cookie_secret, request.cookies.get(sessions.COOKIE))
    if await access.keys_configured():
        role = None
        if s is not None and s.login is not None:
            # Logged out, expired server-side, or its key revoked: the session is over.
            role = await access.session_role(s.sid, s.login)
            if role is None:
                s = None
        if s is None:
            s, fresh = sessions.new_session(None), True
        else:
            fresh = False
        visit = Visit(request, service, access, s, fresh, True, role or READ)
        if s.login is None and not public:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise Refused(visit.redirect(f"/console/login?next={quote(target, safe='')}"))
        return visit
    visit = Visit(request, service, access, s or sessions.new_session(None), s is None, False)
    if not auth.is_loopback(request):
        raise Refused(
            visit.render(
                "message.html",
                403,
                title="Console not available",
                message="No API keys are configured, so the console only answers on "
                "this machine (loopback). Set ORCH_API_KEYS to use it from elsewhere.",
            )
        )
    return visit


Handler = Callable[[Visit], Awaitable[Response]]


def page(*, public: bool = False) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """A console endpoint: checks access, and shows engine refusals as pages."""

    def wrap(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            try:
                visit = await _visit(request, public=public)
            except Refused as r:
                return r.response
            try:
                return await fn(visit)
            except Refused as r:
                return r.response
            except ServiceError as err:
                return visit.render(
                    "message.html",
                    http_status(err),
                    title=err.code.replace("_", " ").capitalize(),
                    message=err.message,
                    code=err.code,
                )

        return endpoint

    return wrap
