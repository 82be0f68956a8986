"""A fast fake OpenAI-compatible upstream, for gateway tests and benchmarks.

``python -m aifab.testing.upstream --port 8001 [--latency-ms 5 --fail-rate 0.1 ...]`` serves
``GET /v1/models``, ``GET /healthz``, ``POST /v1/chat/completions`` and ``/v1/completions`` (plain and
``stream: true`` SSE in OpenAI's chunk format, ``stream_options.include_usage`` honoured) and
``POST /v1/embeddings`` (deterministic vectors, float or base64). One token is one word: the reply is
``reply`` cut to ``max_tokens`` words, ``usage.prompt_tokens`` counts the prompt's words.

It is a raw ASGI callable on uvicorn (httptools, uvloop, orjson): no framework, so that it costs the
gateway under test as little CPU as possible (thousands of requests/s on one core).

``FakeUpstream`` runs it in a subprocess, so a test can SIGKILL it and bring it back on the same port.

Limits: failures (``fail_rate``/``fail_mode``) and ``latency_ms`` apply to the model endpoints only;
``/healthz`` and ``/v1/models`` always answer (a stuck replica whose health check still passes).
``close`` and ``midstream`` drop the connection through uvicorn's transport, an uvicorn internal.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import hashlib
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from aifab.testing.server import free_port, terminate, wait_ready

FailMode = Literal["status500", "status429", "close", "hang", "midstream"]
FAIL_MODES: tuple[str, ...] = ("status500", "status429", "close", "hang", "midstream")
DEFAULT_REPLY = "This is a reply from the fake upstream."

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class UpstreamOptions:
    """How the fake upstream behaves; each field is also a CLI flag (``latency_ms`` -> ``--latency-ms``)."""

    reply: str = DEFAULT_REPLY
    latency_ms: float = 0.0  # before the response headers (errors included)
    tokens_per_s: float = 0.0  # stream pacing; a plain reply waits as long as its stream would. 0 = no wait
    fail_rate: float = 0.0  # share of model requests that fail, the way fail_mode says
    fail_mode: FailMode = "status500"
    name: str = "fake"  # in the x-upstream header and system_fingerprint: which replica answered
    require_key: str | None = None  # 401 on /v1/* without "Authorization: Bearer <key>"
    models: tuple[str, ...] = ("fake",)  # what /v1/models lists; any model name is served
    embedding_dim: int = 8
    seed: int = 0  # of the failure draws


class _Dropped(Exception):
    """Raised inside a handler after the connection was cut on purpose."""


def _words(text: str) -> list[str]:
    return text.split()


def _pieces(words: list[str]) -> list[str]:
    """The stream's content pieces: concatenated they give the words joined by single spaces."""
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _prompt_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        parts: list[str] = []
        for msg in body["messages"] or []:
            content = msg.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts += [p.get("text", "") for p in content if isinstance(p, dict)]
        return " ".join(parts)
    prompt = body.get("prompt", "")
    return " ".join(map(str, prompt)) if isinstance(prompt, list) else str(prompt)


def _vector(text: str, dim: int) -> list[float]:
    """A unit vector that depends only on the text."""
    raw = hashlib.shake_128(text.encode()).digest(2 * dim)
    vec = [(v - 32768) / 32768 for v in struct.unpack(f"<{dim}H", raw)]
    norm = sum(x * x for x in vec) ** 0.5 or 1.0
    return [x / norm for x in vec]


class FakeUpstreamApp:
    """The ASGI callable. Stateless apart from the failure draws."""

    def __init__(self, options: UpstreamOptions) -> None:
        self.opts = options
        self._rng = random.Random(options.seed)
        self._name_header = (b"x-upstream", options.name.encode())
        self._models = orjson.dumps({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": options.name} for m in options.models]})
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/completions"): self._completions,
            ("POST", "/v1/embeddings"): self._embeddings,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == "/healthz":
            return await self._send(send, 200, b'{"status":"ok"}')
        if path.startswith("/v1/") and self.opts.require_key and not self._authorized(scope):
            return await self._error(send, 401, "invalid api key", "invalid_request_error")
        if method == "GET" and path == "/v1/models":
            return await self._send(send, 200, self._models)
        handler = self._routes.get((method, path))
        if handler is None:
            return await self._error(send, 404, f"no route {method} {path}", "invalid_request_error")
        try:
            body = orjson.loads(await _read_body(receive))
        except orjson.JSONDecodeError:
            return await self._error(send, 400, "body is not JSON", "invalid_request_error")
        if self.opts.latency_ms:
            await asyncio.sleep(self.opts.latency_ms / 1000)
        try:
            if self.opts.fail_rate and self._rng.random() < self.opts.fail_rate:
                return await self._fail(receive, send, handler, body)
            await handler(body, receive, send)
        except _Dropped:
            return

    def _authorized(self, scope: Scope) -> bool:
        key = (self.opts.require_key or "").encode()
        return any(k == b"authorization" and v[:7].lower() == b"bearer " and v[7:] == key
                   for k, v in scope["headers"])

    # -- failures ---------------------------------------------------------------------------------------

    async def _fail(self, receive: Receive, send: Send, handler: Handler, body: dict[str, Any]) -> None:
        mode = self.opts.fail_mode
        if mode == "status500":
            await self._error(send, 500, "injected failure", "server_error")
        elif mode == "status429":
            await self._error(send, 429, "injected rate limit", "rate_limit_error", [(b"retry-after", b"1")])
        elif mode == "close":
            _drop(receive)
        elif mode == "hang":
            while (await receive())["type"] != "http.disconnect":
                pass
        else:  # midstream: the handler's own send, cut after the headers and half the body
            await handler(body, receive, _cutting_send(send, receive))

    # -- endpoints --------------------------------------------------------------------------------------

    def _reply(self, body: dict[str, Any]) -> tuple[list[str], str, dict[str, int]]:
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        words = _words(self.opts.reply)
        finish = "stop"
        if limit is not None and len(words) > int(limit):
            words, finish = words[: int(limit)], "length"
        prompt = len(_words(_prompt_text(body)))
        usage = {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)}
        return words, finish, usage

    async def _chat(self, body: dict[str, Any], receive: Receive, send: Send) -> None:
        await self._generate(body, send, chat=True)

    async def _completions(self, body: dict[str, Any], receive: Receive, send: Send) -> None:
        await self._generate(body, send, chat=False)

    async def _generate(self, body: dict[str, Any], send: Send, *, chat: bool) -> None:
        words, finish, usage = self._reply(body)
        head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
                "model": body.get("model", ""), "system_fingerprint": self.opts.name}
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(send, head, words, finish, usage if include_usage else None, chat=chat)
        if self.opts.tokens_per_s:
            await asyncio.sleep(len(words) / self.opts.tokens_per_s)
        text = " ".join(words)
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        await self._send(send, 200, orjson.dumps({**head, "choices": [choice], "usage": usage}))

    async def _stream(self, send: Send, head: dict[str, Any], words: list[str], finish: str,
                      usage: dict[str, int] | None, *, chat: bool) -> None:
        head = {**head, "object": "chat.completion.chunk" if chat else "text_completion"}
        if usage is not None:
            head["usage"] = None  # as OpenAI does on every chunk but the last when usage is asked for

        def chunk(piece: str | None, role: bool = False, finish_reason: str | None = None) -> bytes:
            choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish_reason}
            if chat:
                delta: dict[str, str] = {"role": "assistant", "content": ""} if role else {}
                if piece is not None:
                    delta["content"] = piece
                choice["delta"] = delta
            else:
                choice["text"] = piece or ""
            return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"

        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), self._name_header]})
        gap = 1 / self.opts.tokens_per_s if self.opts.tokens_per_s else 0.0
        if chat:
            await _more(send, chunk(None, role=True))
        for piece in _pieces(words):
            if gap:
                await asyncio.sleep(gap)
            await _more(send, chunk(piece))
        tail = chunk(None, finish_reason=finish)
        if usage is not None:
            tail += b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n"
        await send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n"})

    async def _embeddings(self, body: dict[str, Any], receive: Receive, send: Send) -> None:
        texts = body.get("input", "")
        texts = [texts] if isinstance(texts, str) else [t if isinstance(t, str) else str(t) for t in texts]
        dim = int(body.get("dimensions") or self.opts.embedding_dim)
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec = _vector(text, dim)
            emb: Any = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode() if b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(len(_words(t)) for t in texts)
        await self._send(send, 200, orjson.dumps({
            "object": "list", "data": data, "model": body.get("model", ""),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))

    # -- plumbing ---------------------------------------------------------------------------------------

    async def _send(self, send: Send, status: int, payload: bytes,
                    extra: list[tuple[bytes, bytes]] | None = None) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                   self._name_header, *(extra or [])]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _error(self, send: Send, status: int, message: str, kind: str,
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
        envelope = {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
        await self._send(send, status, orjson.dumps(envelope), extra)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        msg = await receive()
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(chunks)


async def _more(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


def _drop(receive: Receive) -> None:
    """Cut the connection now, mid-response or before it. ASGI has no verb for it: reach uvicorn's
    ``RequestResponseCycle`` (``receive`` is its bound method) and close its transport (what was sent is
    flushed, then FIN); marking the cycle disconnected keeps uvicorn from answering 500 in our place."""
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("dropping a connection needs uvicorn's http protocol (httptools or h11)")
    transport.close()
    cycle.disconnected = True  # type: ignore[union-attr]
    raise _Dropped


def _cutting_send(send: Send, receive: Receive) -> Send:
    """A ``send`` that passes the response start and the first half of the body, then drops the
    connection. A plain reply is one body message: half of its bytes go out."""
    sent = 0

    async def wrapped(message: dict[str, Any]) -> None:
        nonlocal sent
        if message["type"] == "http.response.start":
            return await send(message)
        if message.get("more_body") and sent < 2:  # a stream: the role chunk and one content chunk
            sent += 1
            return await send(message)
        if sent == 0:  # a plain reply: half of it
            await send({**message, "body": message["body"][: len(message["body"]) // 2], "more_body": True})
        _drop(receive)

    return wrapped


# -- running it ---------------------------------------------------------------------------------------


def serve(options: UpstreamOptions, *, host: str = "127.0.0.1", port: int = 8001) -> None:
    """Serve until SIGINT/SIGTERM, in this process."""
    import uvicorn

    config = uvicorn.Config(FakeUpstreamApp(options), host=host, port=port, http="httptools", loop="uvloop",
                            lifespan="off", access_log=False, log_level="warning", server_header=False,
                            timeout_graceful_shutdown=1, backlog=4096)
    uvicorn.Server(config).run()


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def to_argv(options: UpstreamOptions) -> list[str]:
    """The CLI flags that rebuild ``options`` (defaults left out)."""
    argv: list[str] = []
    for f in dataclasses.fields(UpstreamOptions):
        value = getattr(options, f.name)
        if value == f.default:
            continue
        argv += [_flag(f.name), *value] if isinstance(value, tuple) else [f"{_flag(f.name)}={value}"]
    return argv


def parse_args(argv: list[str] | None = None) -> tuple[UpstreamOptions, str, int]:
    ap = argparse.ArgumentParser(prog="python -m aifab.testing.upstream", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    for f in dataclasses.fields(UpstreamOptions):
        default = f.default
        if isinstance(default, tuple):
            ap.add_argument(_flag(f.name), nargs="+", default=list(default))
        elif f.name == "fail_mode":
            ap.add_argument(_flag(f.name), choices=FAIL_MODES, default=default)
        else:
            kind = type(default) if default is not None else str
            ap.add_argument(_flag(f.name), type=kind, default=default)
    ns = vars(ap.parse_args(argv))
    host, port = ns.pop("host"), ns.pop("port")
    ns["models"] = tuple(ns["models"])
    opts = UpstreamOptions(**ns)
    if not 0 <= opts.fail_rate <= 1:
        ap.error("--fail-rate must be within 0..1")
    return opts, host, port


def main(argv: list[str] | None = None) -> None:
    opts, host, port = parse_args(argv)
    serve(opts, host=host, port=port)


class FakeUpstream:
    """``python -m aifab.testing.upstream`` in a subprocess on a loopback port; a context manager.

    ``FakeUpstream(latency_ms=5, name="a")``: keyword arguments are ``UpstreamOptions`` fields.
    ``kill()`` SIGKILLs it (a replica dying), ``restart()`` brings it back on the same port.
    """

    def __init__(self, port: int | None = None, *, startup_timeout: float = 15.0, **options: Any) -> None:
        if "models" in options:
            options["models"] = tuple(options["models"])
        self.options = UpstreamOptions(**options)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.base = f"http://{self.host}:{self.port}"
        self.url = f"{self.base}/v1"
        self.startup_timeout = startup_timeout
        self._log = tempfile.NamedTemporaryFile(prefix=f"fake-upstream-{self.port}-", suffix=".log", delete=False)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        import aifab

        # the child imports the same aifab as this process, wherever that comes from
        src = str(Path(aifab.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "aifab.testing.upstream", "--host", self.host, "--port", str(self.port),
               *to_argv(self.options)]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_ready(f"{self.base}/healthz", self.proc, self.startup_timeout, "fake upstream", self.log)
        except BaseException:
            self.stop()
            raise

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def kill(self) -> None:
        """SIGKILL: open connections are reset, nothing is flushed."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        """Kill it if it runs, then start it again on the same port with the same options."""
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc:
            terminate(self.proc, timeout=5)

    def close(self) -> None:
        self.stop()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    def __enter__(self) -> FakeUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    main()
