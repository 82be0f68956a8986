"""Errors at the serving app's HTTP edge, in the one OpenAI envelope of ``aifab.errors.error_response``.

No stack trace ever reaches a client; unexpected errors are logged with their trace and answered 500.
A full disk, wherever it is hit (a file, SQLite, PostgreSQL), is answered 507 ``insufficient_storage``.
A non-admin key never sees a server path in a message: folders are cut from absolute paths.
"""

from __future__ import annotations

import copy
import logging
import sqlite3

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from aifab.api import validation_error
from aifab.errors import AifabError, error_response, hide_paths, out_of_space
from aifab.identity import KEY_SCOPE

log = logging.getLogger("aifab.serve")


def respond(exc: AifabError, request: Request | None = None, headers: dict[str, str] | None = None) -> Response:
    """``exc`` in the OpenAI envelope; for a non-admin caller of ``request``, without server paths."""
    if request is not None:
        key = request.scope.get(KEY_SCOPE)
        if key is not None and not key.admin:
            exc = copy.copy(exc)
            exc.message = hide_paths(exc.message)
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
    async def _aifab(request: Request, exc: AifabError) -> Response:
        return respond(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return respond(validation_error(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return respond(_http_error(exc), request, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return respond(AifabError("internal server error; see the server log"))

    async def _storage(request: Request, exc: Exception) -> Response:
        full = out_of_space(exc)
        if full is None:
            return await _unexpected(request, exc)
        log.error("out of disk space on %s %s: %s", request.method, request.url.path, exc)
        return respond(full, request)

    # the errors a full disk raises; any other of them is still a logged 500
    for kind in (OSError, sqlite3.Error, SQLAlchemyError):
        app.add_exception_handler(kind, _storage)
