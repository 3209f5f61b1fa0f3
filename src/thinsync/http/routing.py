"""A route class that rejects a path by its literal prefix before trying the route's regex.

Starlette tries routes one by one; with a set of routes per configuration kind that linear scan
was a fifth of a write's CPU time (profiled in bench/results/write_api.md). Rejecting on the
literal prefix first makes each miss a string comparison.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope


class PrefixRoute(APIRoute):
    def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(path, *args, **kwargs)
        literal = path.split("{", 1)[0]
        self._prefix = literal
        self._exact = "{" not in path

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = scope.get("path", "")
        if scope["type"] == "http" and (
            (self._exact and path != self._prefix) or (not self._exact and not path.startswith(self._prefix))
        ):
            return Match.NONE, {}
        return super().matches(scope)
