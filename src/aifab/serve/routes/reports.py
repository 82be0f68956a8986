"""``/v1/usage`` and ``/v1/feedback``: what the gateway in front of this app recorded, read and rated
(the gateway reaches these routes through the ASGI scope; an app that runs alone has neither)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Query

from aifab.errors import InvalidRequest
from aifab.serve.deps import Caller, Gateway
from aifab.serve.routing import api_router

router = api_router("/v1")


def _need(gateway: Gateway, what: str) -> Any:
    if gateway is None:
        raise InvalidRequest(f"{what} needs the gateway and its state store")
    return gateway


@router.get("/usage")
async def usage(
    gateway: Gateway, caller: Caller,
    since: Annotated[str | None, Query(description="an ISO date or time, or a span back from now: 7d, 24h")] = None,
    key: Annotated[str | None, Query(description="another key's name or id (an admin key)")] = None,
) -> dict[str, Any]:
    """Requests and tokens per key and model: the caller's own, or (an admin key) everyone's."""
    return await _need(gateway, "usage").usage(caller, since=since, of=key)


FEEDBACK = {
    "type": "object",
    "required": ["response_id", "rating"],
    "properties": {
        "response_id": {"type": "string", "description": "the id of the response being rated"},
        "rating": {"type": "string", "enum": ["up", "down"]},
        "correction": {"type": "string", "description": "the answer it should have given"},
        "comment": {"type": "string"},
    },
}


@router.post("/feedback", openapi_extra={"requestBody": {"required": True,
                                                          "content": {"application/json": {"schema": FEEDBACK}}}})
async def feedback(body: Annotated[dict[str, Any], Body()], gateway: Gateway, caller: Caller) -> dict[str, Any]:
    """Rate (and correct) a logged response, with the key that made it."""
    return await _need(gateway, "feedback").feedback(caller, body)
