"""The front door (pure ASGI, in front of the serving app): authenticate, check scopes, guard the input,
admit against quotas, route with failover, guard and meter the output, record the exchange."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aifab.config import Settings
from aifab.errors import (
    AifabError,
    Forbidden,
    InvalidRequest,
    PayloadTooLarge,
    Unauthorized,
    UpstreamError,
    error_body,
)
from aifab.gateway import payload as P
from aifab.gateway.audit import AuditLog
from aifab.gateway.exchange import Exchange
from aifab.gateway.guards import Guardrails
from aifab.gateway.health import Breaker, HealthChecker, RetryBudget
from aifab.gateway.metrics import GatewayMetrics
from aifab.gateway.protocol import Limiter
from aifab.gateway.proxy import Answer, Forwarder
from aifab.gateway.rewrite import StreamRewriter, rewrite_body
from aifab.gateway.rollouts import Rollout, RolloutStore, RolloutWatcher
from aifab.gateway.router import Router
from aifab.gateway.tracing import Tracing
from aifab.gateway.upstreams import UpstreamFailure, call_local
from aifab.identity import KEY_SCOPE, ApiKey, current_key

log = logging.getLogger("aifab.gateway")

# path -> (endpoint, upstream path, response id prefix, chat)
MODEL_PATHS = {
    "/v1/chat/completions": ("chat.completions", "/chat/completions", "chatcmpl-", True),
    "/v1/completions": ("completions", "/completions", "cmpl-", False),
    "/v1/embeddings": ("embeddings", "/embeddings", None, False),
}
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
CHARGE_EVERY = 16  # streamed completion tokens charged to the key's tokens/min in batches of this


class Gateway:
    def __init__(self, app: ASGIApp, settings: Settings, *, keys: Any = None, limiter: Limiter | None = None,
                 guardrails: Any = None, db: Any = None, registry: CollectorRegistry | None = None) -> None:
        gs = settings.gateway
        self.app, self.settings, self.keys, self.limiter, self.db = app, gs, keys, limiter, db
        self.guardrails = guardrails if guardrails is not None and gs.guardrails.enabled else None
        # what reaches the audit log and feedback is redacted even when the guardrails are off
        self.redact: Callable[[str], str] = (guardrails or Guardrails(gs.guardrails)).redact
        self.max_body = settings.serve.max_body_bytes
        self.router = Router(gs, app)
        self.metrics = GatewayMetrics(registry or CollectorRegistry(), self.router.remote_upstreams)
        self.breaker = Breaker(gs.eject_after, gs.eject_seconds,
                               on_eject=lambda u: self.metrics.ejections.labels(u.name).inc())
        self.health = HealthChecker(self.router.remote_upstreams(), self.breaker, gs.health_interval)
        self.forwarder = Forwarder(self.router, self.breaker, RetryBudget(gs.retry_budget), self.metrics)
        self.audit = AuditLog(db) if db is not None and gs.audit else None
        self.tracing = Tracing(gs.otel_endpoint) if gs.otel_endpoint else None
        self.rollouts = RolloutWatcher(RolloutStore(db), self._apply_rollouts, self._load_local) if db else None

    # --- ASGI ------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self._start()
        path = scope["path"]
        if path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            key = self._authenticate(scope)
        except Unauthorized as exc:
            self.metrics.rejected.labels("unauthorized").inc()
            await _error(send, exc)
            return
        method = scope["method"]
        if method == "POST" and path in MODEL_PATHS:
            await self._model_request(scope, receive, send, key, *MODEL_PATHS[path])
        elif method == "GET" and path == "/v1/models":
            await self._models(send, key)
        elif method == "GET" and path == "/v1/usage":
            await self._usage(scope, send, key)
        elif method == "POST" and path == "/v1/feedback":
            await self._feedback(receive, send, key)
        elif path == "/metrics" and key is not None and not key.admin:
            await _error(send, Forbidden("metrics need an admin key"))
        else:
            await self.app({**scope, KEY_SCOPE: key}, receive, send)

    def _lifespan(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._start()
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
            return message

        return wrapped

    def _start(self) -> None:
        self.health.start()
        if self.rollouts is not None:
            self.rollouts.start()

    def _apply_rollouts(self, rollouts: dict[str, Rollout]) -> None:
        self.router.rollouts = rollouts

    async def _load_local(self, name: str) -> None:
        """Make sure this process serves ``name`` (a model routed nowhere else), loading it if needed."""
        if not self.router.resolve(name).local:
            return
        status, body = await call_local(self.app, "POST", f"/v1/models/{name}/load", None)
        if status != 200:
            raise UpstreamError(f"cannot load '{name}': {body[:300].decode(errors='replace')}")

    async def aclose(self) -> None:
        await self.health.stop()
        if self.rollouts is not None:
            await self.rollouts.stop()
        await self.router.close()
        if self.audit is not None:
            await asyncio.to_thread(self.audit.close)
        if self.limiter is not None:
            await self.limiter.close()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.close)
        if self.keys is not None:
            self.keys.close()

    def _authenticate(self, scope: Scope) -> ApiKey | None:
        """None = no key needed (no key exists: a loopback-only server). Otherwise a valid, unrevoked key."""
        if self.keys is None:
            return None
        token = _token(scope["headers"])
        required, key = self.keys.check(token)  # one freshness check of the key cache per request
        if not required:
            return None
        if not token:
            raise Unauthorized("this server needs an API key: send 'Authorization: Bearer <key>'")
        if key is None:
            raise Unauthorized("the API key is not valid (unknown or revoked)")
        return key

    # --- model requests --------------------------------------------------------------------------

    async def _model_request(self, scope: Scope, receive: Receive, send: Send, key: ApiKey | None,
                             endpoint: str, upath: str, prefix: str | None, chat: bool) -> None:
        ex = Exchange(f"{prefix or ''}{uuid.uuid4().hex}", endpoint, "", key)  # the id the client will see
        if self.tracing is None:
            await self._exchange(scope, receive, send, ex, upath, prefix, chat)
            return
        with self.tracing.start(ex) as span:
            await self._exchange(scope, receive, send, ex, upath, prefix, chat)
            self.tracing.annotate(span, ex)

    async def _exchange(self, scope: Scope, receive: Receive, send: Send, ex: Exchange, upath: str,
                        prefix: str | None, chat: bool) -> None:
        endpoint = ex.endpoint
        watcher: asyncio.Future[None] | None = None
        try:
            payload = _parse(await _read_body(receive, self.max_body))
            ex.model = payload["model"]
            ex.stream = bool(payload.get("stream")) and endpoint != "embeddings"
            # a client that leaves (while queued, or mid-stream) cancels the work and frees the upstream
            watcher = asyncio.ensure_future(_disconnected(receive, asyncio.current_task(), ex))
            answer = await self._route(scope, ex, payload, endpoint, upath)
            rid = ex.id if prefix else None
            if not answer.ok:
                await self._pass_error(send, ex, answer)
            elif ex.stream:
                await self._stream(send, ex, answer, ex.id, chat)
            else:
                await self._whole(send, ex, answer, rid, chat)
        except asyncio.CancelledError:
            if watcher is None or not watcher.done() or watcher.cancelled():
                raise  # the server is shutting down
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            ex.finish(499, "the client closed the connection")
        except AifabError as exc:
            ex.finish(exc.status_code, exc.message)
            if watcher is None or not watcher.done():
                await _error(send, exc)
        except Exception as exc:  # a bug: the client gets a clean 500, the log gets the trace
            log.exception("gateway error on %s", endpoint)
            ex.finish(500, repr(exc))
            await _error(send, AifabError("internal gateway error; see the server log"))
        finally:
            if watcher is not None:
                watcher.cancel()
            await self._settle(ex)

    async def _route(self, scope: Scope, ex: Exchange, payload: dict[str, Any], endpoint: str, upath: str) -> Answer:
        key = ex.key
        if key is not None and not key.allows_model(ex.model):
            self.metrics.rejected.labels("forbidden").inc()
            raise Forbidden(f"the key '{key.name}' may not use the model '{ex.model}'", param="model")
        headers = scope["headers"]
        session = _header(headers, b"x-session-id")
        route = self.router.pick(ex.model, session or payload.get("user"))
        ex.route = route.name
        if endpoint != "embeddings":
            P.clamp_max_tokens(payload, key, route.settings.max_tokens)
        if self.guardrails is not None:
            refs = P.text_refs(payload, endpoint, operator=self.guardrails.settings.scan_operator_roles)
            checked = [c[i] for c, i in refs]
            result = self.guardrails.check_input(checked)
            ex.verdicts.extend(result.verdicts)
            if result.blocked is not None:
                raise InvalidRequest(self.guardrails.refusal(result.blocked), code="content_filter")
            for (c, i), old, new in zip(refs, checked, result.texts, strict=True):
                if new != old:
                    c[i] = new
        texts = [c[i] for c, i in P.text_refs(payload, endpoint)]
        if (key.log_content if key is not None else self.settings.log_content):
            ex.request = P.audit_copy(payload, endpoint, self.redact)
            ex.response = []
        estimate = P.estimate_tokens(texts, len(payload.get("messages") or ()))
        ex.prompt_tokens = estimate
        if key is not None and self.limiter is not None:
            await self.limiter.admit(key, estimate)
            ex.charged = estimate
        if ex.stream:  # always ask for usage (the true token count); the client sees it only if it asked
            options = payload.get("stream_options")
            ex.want_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            payload["stream_options"] = {"include_usage": True}
        balance = route.settings.prefix_chars if route.settings.balance == "prefix" else None
        token = current_key.set(key)
        try:
            headers = [(b"x-request-id", ex.id.encode())]
            if self.tracing is not None:
                headers += self.tracing.headers()
            return await self.forwarder.forward(ex, route, payload, upath, P.affinity(payload, texts, session, balance),
                                                headers)
        finally:
            current_key.reset(token)

    async def _whole(self, send: Send, ex: Exchange, answer: Answer, rid: str | None, chat: bool) -> None:
        try:
            body = rewrite_body(answer.head, ex, rid, chat, self._output_guard, ex.response is not None)
        except (orjson.JSONDecodeError, TypeError, AttributeError) as exc:
            await answer.done(self.breaker, failed=True)
            raise UpstreamError(f"upstream {answer.upstream.name} sent a malformed answer") from exc
        await answer.done(self.breaker)
        ex.first_text()
        ex.finish(200)  # before the last send: a disconnect seen after it must not count as one
        await _send(send, 200, body, self._headers(ex, answer))

    async def _stream(self, send: Send, ex: Exchange, answer: Answer, rid: str, chat: bool) -> None:
        rw = StreamRewriter(ex, rid, chat, self._output_guard, ex.want_usage, ex.response is not None)
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                   (b"x-accel-buffering", b"no"), *self._headers(ex, answer)[1:]]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        streamed = 0
        failed: str | None = None
        try:
            out = rw.feed(answer.head)
            async with asyncio.timeout(max(0.0, answer.deadline - time.monotonic())):
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                assert answer.rest is not None
                async for chunk in answer.rest:
                    out = rw.feed(chunk)
                    if out:
                        await send({"type": "http.response.body", "body": out, "more_body": True})
                    if ex.key is not None and self.limiter is not None and rw.tokens - streamed >= CHARGE_EVERY:
                        await self.limiter.charge(ex.key, rw.tokens - streamed)
                        ex.charged += rw.tokens - streamed
                        streamed = rw.tokens
                    if rw.done:
                        break
            tail = rw.close()
        except (UpstreamFailure, TimeoutError) as exc:
            failed = f"upstream {answer.upstream.name} failed mid-stream: {exc or 'timeout'}"
            code = "upstream_timeout" if isinstance(exc, TimeoutError) else "upstream_error"
            tail = b"data: " + orjson.dumps(error_body(failed, type_="server_error", code=code)) + b"\n\n"
        except asyncio.CancelledError:  # the client left: free the upstream at once
            await answer.done(None)
            ex.completion_tokens = ex.completion_tokens or rw.tokens
            raise
        await answer.done(self.breaker, failed=failed is not None)
        if not rw.usage_seen:
            ex.completion_tokens = rw.tokens
        ex.finish(502 if failed else 200, failed)
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    async def _pass_error(self, send: Send, ex: Exchange, answer: Answer) -> None:
        """An upstream's own error answer (4xx, or this process's 5xx/429) goes to the client as it is."""
        await answer.done(None)
        try:
            message = orjson.loads(answer.head)["error"]["message"]
        except Exception:
            message = answer.head[:200].decode(errors="replace")
        headers = [(k, v) for k, v in answer.reply.headers if k in (b"content-type", b"retry-after")]
        ex.finish(answer.reply.status, message)
        await _send(send, answer.reply.status, answer.head, headers)

    def _output_guard(self) -> Any:
        return self.guardrails.output_stream() if self.guardrails is not None else None

    def _headers(self, ex: Exchange, answer: Answer) -> list[tuple[bytes, bytes]]:
        return [(b"content-type", b"application/json"), (b"x-request-id", ex.id.encode()),
                (b"x-aifab-upstream", answer.upstream.name.encode())]

    async def _settle(self, ex: Exchange) -> None:
        """Charge the tokens not charged yet (and correct the prompt estimate), then metrics and audit.
        A refused request (4xx other than a client that left) costs nothing: its up-front charge is
        given back and its audit row counts no tokens."""
        key = ex.key
        if 400 <= ex.status < 500 and ex.status != 499:
            ex.prompt_tokens = ex.completion_tokens = 0
        if key is not None and self.limiter is not None and ex.charged:
            owed = ex.prompt_tokens + ex.completion_tokens - ex.charged
            if owed:
                await self.limiter.charge(key, owed)
        m = self.metrics
        known = ex.route in self.router.routes or ex.status < 400
        route = ex.route if known and ex.route else "-"
        name = key.name if key is not None else "-"
        m.requests.labels(route, ex.upstream or "-", name, str(ex.status)).inc()
        m.latency.labels(route).observe(ex.latency)
        if ex.ttft is not None:
            m.ttft.labels(route).observe(ex.ttft)
        if ex.prompt_tokens or ex.completion_tokens:
            m.tokens.labels(route, name, "prompt").inc(ex.prompt_tokens)
            m.tokens.labels(route, name, "completion").inc(ex.completion_tokens)
        for v in ex.verdicts:
            m.verdicts.labels(v.stage, v.category, v.action).inc()
        if self.audit is not None and ex.model:
            if ex.response is not None:
                ex.response = [self.redact("".join(ex.response))]
            for call in ex.tool_calls or []:
                if "arguments" in call:
                    call["arguments"] = self.redact(call["arguments"])
            self.audit.record(ex.row())

    # --- listings --------------------------------------------------------------------------------

    async def _models(self, send: Send, key: ApiKey | None) -> None:
        status, body = await call_local(self.app, "GET", "/v1/models", key)
        data = orjson.loads(body).get("data", []) if status == 200 else []
        have = {d["id"] for d in data}
        data += [{"id": n, "object": "model", "created": 0, "owned_by": "aifab", "kind": "route"}
                 for n in self.router.public_names() if n not in have]
        if key is not None:
            data = [d for d in data if key.allows_model(d["id"])]
        await _send(send, 200, orjson.dumps({"object": "list", "data": data}), [(b"content-type", b"application/json")])

    async def _feedback(self, receive: Receive, send: Send, key: ApiKey | None) -> None:
        """``POST /v1/feedback``: a rating (and correction) of a logged response, by the key that made it."""
        from aifab.feedback import FeedbackStore, feedback_from_request

        try:
            if self.db is None:
                raise InvalidRequest("feedback needs the state store")
            body = feedback_from_request(_parse_json(await _read_body(receive, self.max_body)))
            if self.audit is not None:
                await asyncio.to_thread(self.audit.flush)  # the response may have been answered a moment ago
            store = FeedbackStore(self.db, redact=self.redact)
            stored = await asyncio.to_thread(store.record, body.response_id, body.rating,
                                             correction=body.correction, comment=body.comment, key=key)
        except AifabError as exc:
            await _error(send, exc)
            return
        await _send(send, 200, orjson.dumps(stored, default=str), [(b"content-type", b"application/json")])

    async def _usage(self, scope: Scope, send: Send, key: ApiKey | None) -> None:
        from urllib.parse import parse_qs

        from aifab.gateway.usage import parse_since, usage_report

        if self.db is None:
            await _error(send, InvalidRequest("usage needs the state store"))
            return
        query = parse_qs(scope.get("query_string", b"").decode())
        try:
            since = parse_since(query["since"][0]) if "since" in query else None
            target = key
            if "key" in query:
                if key is not None and not key.admin and query["key"][0] not in (key.name, key.id):
                    raise Forbidden("only an admin key may read another key's usage")
                target = await asyncio.to_thread(self.keys.get, query["key"][0])
            elif key is not None and key.admin:
                target = None
            if self.audit is not None:
                await asyncio.to_thread(self.audit.flush)
            report = await asyncio.to_thread(usage_report, self.db, key=target, since=since)
        except AifabError as exc:
            await _error(send, exc)
            return
        await _send(send, 200, orjson.dumps(report, default=str), [(b"content-type", b"application/json")])


def _token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for k, v in headers:
        if k == b"authorization":
            value = v.decode("latin-1")
            if value[:7].lower() == "bearer ":
                return value[7:].strip()
        elif k in (b"x-api-key", b"api-key"):
            return v.decode("latin-1").strip()
    return None


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None


async def _read_body(receive: Receive, limit: int) -> bytes:
    body, more = bytearray(), True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            raise asyncio.CancelledError()
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is larger than the server's limit of {limit} bytes")
    return bytes(body)


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return payload


def _parse(body: bytes) -> dict[str, Any]:
    payload = _parse_json(body)
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required", param="model")
    return payload


async def _disconnected(receive: Receive, task: asyncio.Task[Any] | None, ex: Exchange) -> None:
    """Cancel ``task`` if the client disconnects before the exchange has finished."""
    while (await receive())["type"] != "http.disconnect":
        pass
    if task is not None and ex.end is None:
        task.cancel()


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _error(send: Send, exc: AifabError) -> None:
    headers = [(b"content-type", b"application/json")]
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
    await _send(send, exc.status_code, orjson.dumps(exc.body()), headers)
