"""Pool members: an OpenAI-compatible server over HTTP (``HttpUpstream``, which gets the validated request
serialised once) or this process's own serving app called in-process over ASGI (``LocalUpstream``, which
gets the request object itself in the scope: no bytes, no second parse). Both hand back status and headers
as soon as they arrive and the body as raw chunks, so a stream passes through with back-pressure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from starlette.types import ASGIApp, Message

from aifab.api import CALL_SCOPE, Call
from aifab.gateway.protocol import UpstreamState
from aifab.identity import KEY_SCOPE, ApiKey, current_key

GATEWAY_SCOPE = "aifab.gateway"  # the gateway itself, for the serving app's routes that report on it


class UpstreamFailure(Exception):
    """The upstream could not be reached or gave no usable answer. ``hard`` = the connection was refused
    (the replica is down: eject it at once); ``timeout`` = it did not answer in time."""

    def __init__(self, message: str, *, hard: bool = False, timeout: bool = False) -> None:
        super().__init__(message)
        self.hard = hard
        self.timeout = timeout


class HttpReply:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.status = response.status
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]

    async def body(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise UpstreamFailure(f"connection lost: {type(exc).__name__}") from exc
        except TimeoutError as exc:
            raise UpstreamFailure("no data within the timeout", timeout=True) from exc

    async def release(self) -> None:
        self.response.release()


class HttpUpstream:
    """An OpenAI-compatible server at ``url`` (…/v1). Its key is sent as a bearer token and kept out of
    ``repr``, logs and errors."""

    def __init__(self, url: str, *, name: str | None = None, model: str | None = None, weight: float = 1.0,
                 api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self.name = name or parts.netloc
        self.model = model
        self.weight = weight
        self.state = UpstreamState()
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"HttpUpstream({self.name!r})"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding")
            )
        return self._session

    async def send(self, path: str, call: Call, model: str, headers: list[tuple[bytes, bytes]], *, stream: bool,
                   connect_timeout: float, first_byte_timeout: float) -> HttpReply:
        body = call.encode(model)
        sent = {"Content-Type": "application/json", **{k.decode("latin-1"): v.decode("latin-1") for k, v in headers}}
        sent.update(self._auth)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=first_byte_timeout)
        try:
            response = await self._client().post(self.url + path, data=body, headers=sent, timeout=timeout)
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamFailure(f"cannot connect: {exc.os_error.strerror or type(exc).__name__}", hard=True) from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise UpstreamFailure(f"request failed: {type(exc).__name__}") from exc
        except TimeoutError as exc:
            raise UpstreamFailure("no response within the timeout", timeout=True) from exc
        return HttpReply(response)

    async def probe(self) -> bool:
        try:
            timeout = aiohttp.ClientTimeout(total=2.0)
            async with self._client().get(self.url + "/models", headers=self._auth, timeout=timeout) as r:
                await r.read()
                return r.status < 500
        except (aiohttp.ClientError, ConnectionError, TimeoutError):
            return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class LocalReply:
    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], chunks: asyncio.Queue[bytes | None],
                 task: asyncio.Task[None], disconnect: asyncio.Event) -> None:
        self.status, self.headers = status, headers
        self._chunks, self._task, self._disconnect = chunks, task, disconnect

    async def body(self) -> AsyncIterator[bytes]:
        while (chunk := await self._chunks.get()) is not None:
            yield chunk
        if self._task.done() and not self._task.cancelled() and self._task.exception() is not None:
            raise UpstreamFailure(f"the serving app failed mid-response: {self._task.exception()!r}")

    async def release(self) -> None:
        if not self._task.done():
            self._disconnect.set()
            self._task.cancel()


class LocalUpstream:
    """This process's serving app, called in-process: no socket, no serialisation, no second parse."""

    def __init__(self, app: ASGIApp, *, model: str | None = None, name: str = "local", weight: float = 1.0) -> None:
        self.app, self.model, self.name, self.weight = app, model, name, weight
        self.state = UpstreamState()

    async def send(self, path: str, call: Call, model: str, headers: list[tuple[bytes, bytes]], *, stream: bool,
                   connect_timeout: float, first_byte_timeout: float) -> LocalReply:
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)  # bounded: the app waits for a slow client
        started: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        disconnect = asyncio.Event()
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.set_result(message)
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    await chunks.put(message["body"])
                if not message.get("more_body", False):
                    await chunks.put(None)

        call.request.model = model
        scope = _scope("/v1" + path, headers)
        scope[CALL_SCOPE] = call
        task = asyncio.ensure_future(self.app(scope, receive, send))
        task.add_done_callback(lambda t: _finish(t, started, chunks, disconnect))
        try:
            start = await asyncio.wait_for(asyncio.shield(started), first_byte_timeout)
        except BaseException as exc:  # a timeout, or the caller cancelled (its client left): stop the app
            disconnect.set()
            task.cancel()
            if isinstance(exc, TimeoutError):
                raise UpstreamFailure("no response within the timeout", timeout=True) from exc
            raise
        return LocalReply(start["status"], list(start.get("headers", [])), chunks, task, disconnect)

    async def probe(self) -> bool:
        return True

    async def close(self) -> None:
        return None


async def call_local(app: ASGIApp, method: str, path: str, key: ApiKey | None) -> tuple[int, bytes]:
    """A bodiless in-process request to the serving app (e.g. its model list): status and body."""
    status, body = 500, bytearray()

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    token = current_key.set(key)
    try:
        await app(_scope(path, [], method), receive, send)
    finally:
        current_key.reset(token)
    return status, bytes(body)


def _scope(path: str, headers: list[tuple[bytes, bytes]], method: str = "POST") -> dict[str, Any]:
    return {
        # spec 2.4: a response learns of a disconnect by its send failing; no listener task per stream
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *headers], "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0), KEY_SCOPE: current_key.get(),
    }


def _finish(task: asyncio.Task[None], started: asyncio.Future[Message], chunks: asyncio.Queue[bytes | None],
            released: asyncio.Event) -> None:
    """The app returned (or failed, or was cancelled): unblock whoever waits for its start or its body. Once
    the reader has released the reply nobody reads the body: a pending put would outlive the request."""
    if not started.done():
        exc = None if task.cancelled() else task.exception()
        started.set_exception(UpstreamFailure(f"the serving app failed: {exc!r}" if exc else "the serving app stopped"))
    if released.is_set():
        return
    if task.cancelled() or task.exception() is not None:
        try:
            chunks.put_nowait(None)
        except asyncio.QueueFull:  # the reader is behind: end its stream once it catches up
            asyncio.ensure_future(chunks.put(None))
