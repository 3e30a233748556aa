"""Starlette's router, remembering which route a path and method reached.

Starlette tries every route in order for every request: a Twilio callback is matched
against each API route before its own (some fifteen regular expressions, two callbacks
per SMS). The answer depends only on the path, the root path and the method, so it is
kept (for plain ``Route``s; mounts and anything else are looked up as before). A kept
route is matched again (its path parameters come from that match) and the usual scan
runs if it does not fully match. The routes are fixed once the app is built, so a kept
answer is Starlette's own: its first fully matching route.
"""

from __future__ import annotations

from starlette.routing import Match, Route, Router
from starlette.types import Receive, Scope, Send

MEMO_SIZE = 1024  # paths with ids in them (task URLs) come and go: bounded, refilled


class MemoRouter(Router):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._memo: dict[tuple[str, str, str], Route] = {}

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path_params"):
            await super().app(scope, receive, send)
            return
        key = (scope["path"], scope.get("root_path", ""), scope["method"])
        route = self._memo.get(key)
        if route is None:
            route = self._first_full(scope)
            if route is None:  # 404, 405, a redirect, a mount: Starlette decides
                await super().app(scope, receive, send)
                return
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = route
        match, child_scope = route.matches(scope)
        if match is not Match.FULL:  # routes changed since: never trust the memo then
            self._memo.clear()
            await super().app(scope, receive, send)
            return
        # What Router.app does with the route it finds.
        scope.setdefault("router", self)
        scope["route"] = route
        scope.update(child_scope)
        await route.handle(scope, receive, send)

    def _first_full(self, scope: Scope) -> Route | None:
        """Starlette's choice (its first fully matching route) if that is a plain Route."""
        for route in self.routes:
            match, _child = route.matches(scope)
            if match is Match.FULL:
                return route if type(route) is Route else None
        return None
