"""The HTTP server under the app: uvicorn, with bounds a client cannot hold open.

uvicorn bounds the idle time between two requests of a connection (``timeout_keep_alive``) but not the
time a client takes to send a request's headers, nor the number of connections: a client that opens
connections and trickles bytes holds them for ever. :func:`bounded_http` adds both to uvicorn's
httptools protocol: headers not complete within ``header_timeout_s`` of the connection (or of a
request's first byte) are answered 408 and the connection is closed; a connection over
``max_connections`` is answered 503 at once. A stalled *body* is the app's side:
:class:`aifab.serve.middleware.ReadDeadline`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from aifab.config import ServeSettings
from aifab.errors import error_body


def raw_error(status: int, reason: str, message: str, code: str) -> bytes:
    """A whole HTTP/1.1 error response in the OpenAI envelope, that closes the connection."""
    body = orjson.dumps(error_body(message, type_="invalid_request_error" if status < 500 else "server_error",
                                   code=code))
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n")
    return head.encode() + body


def bounded_http(header_timeout_s: float, max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a deadline on request headers and a cap on connections."""
    too_slow = raw_error(408, "Request Timeout", f"the request headers did not arrive within {header_timeout_s:g} s",
                         "request_timeout")
    too_many = raw_error(503, "Service Unavailable", f"the server has its maximum of {max_connections} connections "
                         "open; retry shortly", "too_many_connections")

    class BoundedHttp(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(too_many)
                transport.close()
                return
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()  # a later request of a kept-alive connection gets its own deadline

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(header_timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.write(too_slow)
                self.transport.close()

    return BoundedHttp


def server_options(settings: ServeSettings) -> dict[str, Any]:
    """The ``uvicorn.Config``/``uvicorn.run`` options that bound what a client can hold open."""
    return {"http": bounded_http(settings.header_timeout_s, settings.max_connections),
            "timeout_keep_alive": settings.keep_alive_s}
