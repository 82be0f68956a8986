"""Errors at the serving app's HTTP edge, in the one OpenAI envelope of ``aifab.errors.error_response``.

No stack trace ever reaches a client; unexpected errors are logged with their trace and answered 500.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from aifab.api import validation_error
from aifab.errors import AifabError, error_response

log = logging.getLogger("aifab.serve")


def respond(exc: AifabError, headers: dict[str, str] | None = None) -> Response:
    status, head, body = error_response(exc)
    return Response(body, status_code=status, headers={**{k.decode(): v.decode() for k, v in head}, **(headers or {})})


def _http_error(exc: StarletteHTTPException) -> AifabError:
    """Starlette's own errors (unknown route, wrong method) as an ``AifabError`` of the same status."""
    err = AifabError(str(exc.detail))
    err.status_code = exc.status_code
    err.error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return err


def install(app: FastAPI) -> None:
    @app.exception_handler(AifabError)
    async def _aifab(_: Request, exc: AifabError) -> Response:
        return respond(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return respond(validation_error(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return respond(_http_error(exc), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return respond(AifabError("internal server error; see the server log"))
