"""The OpenAI error envelope, produced here and only here: ``{"error": {message, type, param, code}}``.

No stack trace ever reaches a client; unexpected errors are logged with their trace and answered 500.
A full disk, wherever it is hit (a file, SQLite, PostgreSQL), is answered 507 ``insufficient_storage``.
A non-admin key never sees a server path in a message: folders are cut from absolute paths.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from aifab.errors import AifabError, Overloaded, error_body, hide_paths, out_of_space
from aifab.identity import KEY_SCOPE

log = logging.getLogger("aifab.serve")


def envelope(
    status: int, message: str, *, type_: str, param: str | None = None, code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(message, type_=type_, param=param, code=code), status_code=status, headers=headers)


def from_aifab(exc: AifabError, request: Request | None = None) -> JSONResponse:
    headers = None
    if isinstance(exc, Overloaded):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    message = _for_caller(request, exc.message) if request is not None else exc.message
    return envelope(exc.status_code, message, type_=exc.error_type, param=exc.param, code=exc.code, headers=headers)


def _for_caller(request: Request, message: str) -> str:
    """Admins (and a keyless loopback server's operator) see messages whole; other keys without paths."""
    key = request.scope.get(KEY_SCOPE)
    return hide_paths(message) if key is not None and not key.admin else message


def _validation_message(err: dict[str, Any]) -> tuple[str, str | None]:
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    if err.get("type") == "json_invalid":
        return f"the request body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}", None
    param = ".".join(loc) or None
    where = f"'{param}'" if param else "the request body"
    return f"invalid value for {where}: {err.get('msg')}", param


def install(app: FastAPI) -> None:
    @app.exception_handler(AifabError)
    async def _aifab(request: Request, exc: AifabError) -> JSONResponse:
        return from_aifab(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc.errors()[0])
        return envelope(400, message, type_="invalid_request_error", param=param, code="invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return envelope(exc.status_code, _for_caller(request, str(exc.detail)), type_=type_,
                        headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return envelope(500, "internal server error; see the server log", type_="server_error")

    async def _storage(request: Request, exc: Exception) -> JSONResponse:
        full = out_of_space(exc)
        if full is None:
            return await _unexpected(request, exc)
        log.error("out of disk space on %s %s: %s", request.method, request.url.path, exc)
        return from_aifab(full, request)

    # the errors a full disk raises; any other of them is still a logged 500
    for kind in (OSError, sqlite3.Error, SQLAlchemyError):
        app.add_exception_handler(kind, _storage)
