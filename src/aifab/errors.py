"""The one exception tree of aifab.

Every error a user can cause or see derives from :class:`AifabError`. Each class carries the HTTP
status and the OpenAI error ``type``/``code`` it maps to, so that the HTTP edge turns it into the OpenAI
error envelope (``error_response``: one function, whether the gateway or the serving app answers) and the
CLI turns it into one line, without either of them knowing the details of the block that raised it.

    AifabError
    ├── ConfigError            bad settings or aifab.toml
    ├── InvalidRequest         400: a request that cannot be served as written
    │   ├── ContextLengthExceeded   400: prompt + max_tokens do not fit the model's context
    │   └── InvalidDocument         400: a file that cannot be ingested (corrupt, binary, too big)
    │       └── NothingToIndex          a file that loads but holds no text to index: skipped, not failed
    ├── Unauthorized           401: no API key, or not a valid one
    ├── Forbidden              403: the key's scopes do not cover the model, collection or action
    ├── NotFound               404: unknown model, package or resource
    ├── Conflict               409: the name is taken
    ├── RequestTimeout         408: the request body stalled
    ├── PayloadTooLarge        413: body over the configured limit
    ├── Overloaded             429: queue full; carries ``retry_after`` seconds
    │   └── RateLimited             429: a key's requests/min, tokens/min or token budget is spent
    ├── EngineError            500: the model runtime failed
    ├── InsufficientStorage    507: the disk (or the database) is full; see :func:`out_of_space`
    ├── UpstreamError          502: every upstream of a route failed (or 504 on a timeout)
    └── MissingDependency      an optional extra is not installed; names the pip command
"""

from __future__ import annotations

import errno
import os
import re

import orjson

Headers = list[tuple[bytes, bytes]]


def error_body(message: str, *, type_: str, param: str | None = None, code: str | None = None) -> dict:
    """The OpenAI error envelope: ``{"error": {message, type, param, code}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(exc: AifabError) -> tuple[int, Headers, bytes]:
    """The HTTP answer to ``exc``: its status, headers (``Retry-After`` on a 429) and the JSON envelope."""
    headers = [(b"content-type", b"application/json")]
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
    return exc.status_code, headers, orjson.dumps(exc.body())


def error_event(exc: AifabError) -> bytes:
    """``exc`` as the last event of a stream that already answered 200 (OpenAI's mid-stream error)."""
    return b"data: " + orjson.dumps(exc.body()) + b"\n\n"


class AifabError(Exception):
    """Base of every aifab error."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def body(self) -> dict:
        return error_body(self.message, type_=self.error_type, param=self.param, code=self.code)


class ConfigError(AifabError):
    status_code = 500
    error_type = "configuration_error"


class InvalidRequest(AifabError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class InvalidDocument(InvalidRequest):
    """One file cannot be ingested; the message is the reason shown next to its path."""

    code = "invalid_document"


class NothingToIndex(InvalidDocument):
    """A file read without fault that has no text to index (an empty file, a page that is only a title and
    a table of contents, a scanned PDF without a text layer): ingest skips it and says why, but it is not
    a failure."""

    code = "nothing_to_index"


class Unauthorized(AifabError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(AifabError):
    status_code = 403
    error_type = "permission_error"
    code = "forbidden"


class NotFound(AifabError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class Conflict(AifabError):
    status_code = 409
    error_type = "invalid_request_error"
    code = "conflict"


class RequestTimeout(AifabError):
    status_code = 408
    error_type = "invalid_request_error"
    code = "request_timeout"


class PayloadTooLarge(AifabError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class Overloaded(AifabError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "queue_full"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(Overloaded):
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float = 1.0, code: str | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        if code is not None:
            self.code = code


class EngineError(AifabError):
    status_code = 500
    error_type = "server_error"
    code = "engine_error"


class InsufficientStorage(AifabError):
    """The server ran out of disk space: nothing was half-written, and the same request works once space
    is freed. Made from the low-level error by :func:`out_of_space`."""

    status_code = 507
    error_type = "server_error"
    code = "insufficient_storage"


class UpstreamError(AifabError):
    status_code = 502
    error_type = "server_error"
    code = "upstream_error"

    def __init__(self, message: str, *, status_code: int = 502, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status_code = status_code


class MissingDependency(AifabError):
    error_type = "configuration_error"

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"{module} is not installed: pip install 'aifab[{extra}]'")
        self.module = module
        self.extra = extra


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_FULL_TEXT = ("database or disk is full", "no space left on device", "disk quota exceeded")
_DISK_FULL_SQLSTATE = "53100"  # PostgreSQL's disk_full


def out_of_space(exc: BaseException) -> InsufficientStorage | None:
    """An :class:`InsufficientStorage` when ``exc`` (or an error it wraps: ``__cause__``, ``__context__``,
    SQLAlchemy's ``orig``) says the disk is full: ``OSError`` ENOSPC/EDQUOT, SQLite's "database or disk
    is full", PostgreSQL's ``disk_full``; else None. The message names no path (clients see it)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, InsufficientStorage):
            return e
        reason = None
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            reason = os.strerror(e.errno)
        elif getattr(e, "sqlstate", None) == _DISK_FULL_SQLSTATE or getattr(e, "pgcode", None) == _DISK_FULL_SQLSTATE:
            reason = "the database's disk is full"
        else:
            text = str(e).lower()
            reason = next((t for t in _FULL_TEXT if t in text), None)
        if reason is not None:
            return InsufficientStorage(f"out of disk space ({reason}): "
                                       "free some space and try again")
        todo += [e.__cause__, e.__context__, getattr(e, "orig", None)]
    return None


_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s/'\"`:,;()\[\]{}<>]+/)+(?=[^\s/'\"`:,;()\[\]{}<>])")


def hide_paths(text: str) -> str:
    """``text`` with the folders of absolute file paths removed (``/srv/aifab/files/f.jsonl`` →
    ``f.jsonl``): what a non-admin caller sees of a server-side error. URLs are left alone."""
    return _ABSOLUTE_PATH.sub("", text)
