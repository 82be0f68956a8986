"""Reading, parsing and validating a request body: one body limit, one JSON parser with one depth limit,
one message for a malformed field. The gateway uses them for the model requests it reads; the serving app
for every other route (and for all routes when it runs without the gateway)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import pydantic_core
from pydantic import BaseModel, ValidationError

from aifab.errors import InvalidRequest, PayloadTooLarge

T = TypeVar("T", bound=BaseModel)
Receive = Callable[[], Awaitable[Mapping[str, Any]]]

# Nesting deeper than this is refused as invalid JSON: pydantic-core's parser (jiter) stops there, and
# orjson, which writes our answers and the audit log, refuses to write deeper than 254 levels. A body
# nested 10,000 deep is a 400, never a RecursionError.
MAX_DEPTH = 200


class ClientGone(Exception):
    """The client disconnected before its body was read whole."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, or ``PayloadTooLarge`` as soon as it passes ``limit`` bytes (chunked bodies included)."""
    body, more = bytearray(), True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone()
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is larger than the server's limit of {limit} bytes")
    return bytes(body)


def loads(body: bytes) -> Any:
    """The one JSON parser of request bodies (``ValueError`` when invalid or nested deeper than ``MAX_DEPTH``)."""
    return pydantic_core.from_json(body)


def parse_json(body: bytes) -> Any:
    """``body`` as JSON (``InvalidRequest`` when it is not, or when it nests deeper than ``MAX_DEPTH``)."""
    try:
        return loads(body)
    except ValueError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None


def validate(model: type[T], body: bytes) -> T:
    """``body`` parsed and validated as ``model`` in one pass; a bad field is a 400 that names it."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False)) from None


def validation_error(errors: list[Any]) -> InvalidRequest:
    """The first of pydantic's (or FastAPI's) validation errors as an ``InvalidRequest`` naming the field
    (``messages.0.role``)."""
    err = errors[0] if errors else {}
    if err.get("type") == "json_invalid":
        detail = err.get("ctx", {}).get("error", err.get("msg"))
        return InvalidRequest(f"the request body is not valid JSON: {detail}", code="invalid_request")
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    where = f"'{param}'" if param else "the request body"
    return InvalidRequest(f"invalid value for {where}: {err.get('msg')}", param=param, code="invalid_request")
