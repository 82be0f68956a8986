"""Every route of the serving app reads its JSON body one way: the request the gateway validated and handed
over in the ASGI scope (no bytes, no second parse), or else the body parsed by aifab's one JSON parser
(``aifab.api.parse_json``: one depth limit for every route, a 400 instead of a ``RecursionError``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from aifab.api import CALL_SCOPE
from aifab.api.body import loads


class _Request(Request):
    async def body(self) -> bytes:
        if CALL_SCOPE in self.scope:
            return b"{}"  # not read: json() hands over the validated request
        return await super().body()

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            call = self.scope.get(CALL_SCOPE)
            if call is not None:
                # a model instance: FastAPI's validation of the body parameter returns it as it is
                self._json = call.request
            else:
                try:
                    self._json = loads(await self.body())
                except ValueError as exc:  # FastAPI answers this one as invalid JSON (400)
                    raise json.JSONDecodeError(str(exc), "", 0) from None
        return self._json


class OneParseRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(_Request(request.scope, request.receive))

        return route


def api_router(prefix: str = "") -> APIRouter:
    """A router whose routes read bodies as above."""
    return APIRouter(prefix=prefix, route_class=OneParseRoute)
