"""Pure ASGI middleware: body size limit (413), body read deadline (408) and request counting."""

from __future__ import annotations

import asyncio
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aifab.api import CALL_SCOPE, read_body
from aifab.api.body import ClientGone
from aifab.errors import PayloadTooLarge, RequestTimeout
from aifab.serve.errors import respond
from aifab.serve.metrics import Metrics


class BodyLimit:
    """Refuses bodies over ``max_bytes`` with 413 before the route reads them; ``overrides`` maps path
    patterns (document uploads) to their own limits. A model request the gateway hands over in the scope
    was read and limited there: it passes (one limit per request)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, overrides: dict[re.Pattern[str], int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = overrides or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or CALL_SCOPE in scope:
            await self.app(scope, receive, send)
            return
        limit = next((n for p, n in self.overrides.items() if p.match(scope["path"])), self.max_bytes)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(scope, receive, send, limit)
            return
        if declared is not None:
            await self.app(scope, receive, send)  # the server enforces Content-Length itself
            return
        # Chunked body of unknown size: read it here (up to the limit), then replay it to the app.
        try:
            body = await read_body(receive, limit)
        except ClientGone:
            return
        except PayloadTooLarge:
            await self._reject(scope, receive, send, limit)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = respond(PayloadTooLarge(f"request body is larger than the server's limit of {limit} bytes"))
        await response(scope, receive, send)


class ReadDeadline:
    """Answers 408 (and closes the connection) when a request body pauses for more than ``seconds``:
    a client that stops sending mid-body otherwise holds a connection and a task for ever. Goes
    outermost, in front of the gateway, which reads model requests' bodies itself.

    The app's pending ``receive`` is ended with ``CancelledError``, as a disconnect ends it, so the
    app unwinds the way it does for a client that left; the 408 goes out if no response has started."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done, expired, started = False, False, False

        async def bounded() -> Message:
            nonlocal body_done, expired
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout(self.seconds):
                    message = await receive()
            except TimeoutError:
                expired = True
                raise asyncio.CancelledError() from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded, watch)
        except asyncio.CancelledError:
            if not expired:
                raise
            if not started:
                response = respond(RequestTimeout(f"the request body stalled for more than {self.seconds:g} s"),
                                   headers={"connection": "close"})
                await response(scope, receive, send)


class RequestCounter:
    """Counts requests and errors by route template and status (pure ASGI: streams pass untouched)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(path, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(path, str(status)).inc()
