"""The front door (pure ASGI, in front of the serving app): authenticate, check scopes, guard the input,
admit against quotas, route with failover, guard and meter the output, record the exchange."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aifab.api import (
    Call,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelRequest,
    read_body,
    validate,
)
from aifab.api.body import ClientGone
from aifab.api.requests import SamplingRequest
from aifab.config import GatewaySettings, Settings
from aifab.errors import (
    AifabError,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unauthorized,
    UpstreamError,
    error_event,
    error_response,
)
from aifab.gateway import payload as P
from aifab.gateway.audit import AuditLog
from aifab.gateway.exchange import Exchange
from aifab.gateway.guards import Guardrails
from aifab.gateway.health import Breaker, HealthChecker, RetryBudget
from aifab.gateway.hosts import is_loopback
from aifab.gateway.metrics import GatewayMetrics
from aifab.gateway.protocol import Limiter
from aifab.gateway.proxy import Answer, Forwarder
from aifab.gateway.rewrite import Relay, StreamRewriter, rewrite_body
from aifab.gateway.rollouts import Rollout, RolloutStore, RolloutWatcher
from aifab.gateway.router import Router
from aifab.gateway.tracing import Tracing
from aifab.gateway.upstreams import GATEWAY_SCOPE, UpstreamFailure, call_local
from aifab.identity import KEY_SCOPE, ApiKey, current_key

log = logging.getLogger("aifab.gateway")

# path -> (endpoint, upstream path, response id prefix, chat, request model)
MODEL_PATHS: dict[str, tuple[str, str, str | None, bool, type[ModelRequest]]] = {
    "/v1/chat/completions": ("chat.completions", "/chat/completions", "chatcmpl-", True, ChatCompletionRequest),
    "/v1/completions": ("completions", "/completions", "cmpl-", False, CompletionRequest),
    "/v1/embeddings": ("embeddings", "/embeddings", None, False, EmbeddingRequest),
}
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/"})  # "/": the web UI's page, which asks for a key itself
UI_ASSETS = "/ui/"  # the web UI's static files: no key needed to load them, nothing behind them
ADMIN_PATHS = "/v1/admin/"
LOCAL_ADMIN = ApiKey(id="local", name="local", prefix="", admin=True)  # the server's own token file's holder
VERSION_HEADER = b"x-aifab-model-version"
DRAIN_S = 120.0  # a reload closes the old routes' connections this long after, when their requests are done
CHARGE_EVERY = 16  # streamed completion tokens charged to the key's tokens/min in batches of this


class Gateway:
    def __init__(self, app: ASGIApp, settings: Settings, *, keys: Any = None, limiter: Limiter | None = None,
                 guardrails: Any = None, db: Any = None, registry: CollectorRegistry | None = None,
                 local_token: str | None = None) -> None:
        gs = settings.gateway
        # the secret of the data directory's token file: whoever can read that file is the machine's admin
        self.local_token = local_token.encode() if local_token else None
        self.open_admin = is_loopback(settings.serve.host)  # keyless admin only where only this machine connects
        # with no key active, only a loopback server (or one told to) answers without a key: revoking the last
        # key of a server that listens beyond this machine must not open it to everyone
        self.open_keyless = self.open_admin or gs.allow_open
        self.app, self.settings, self.keys, self.limiter, self.db = app, gs, keys, limiter, db
        self.guardrails = guardrails if guardrails is not None and gs.guardrails.enabled else None
        # no output check: this process's own answers pass through as they are (see aifab.api.call)
        self.relay = self.guardrails is None or not self.guardrails.checks_output
        # what reaches the audit log and feedback is redacted even when the guardrails are off
        self.redact: Callable[[str], str] = (guardrails or Guardrails(gs.guardrails)).redact
        self.max_body = settings.serve.max_body_bytes
        self.started = int(time.time())  # a configured route is as new as this configuration
        self.router = Router(gs, app)
        self.metrics = GatewayMetrics(registry or CollectorRegistry(), lambda: self.router.remote_upstreams())
        self.breaker = Breaker(gs.eject_after, gs.eject_seconds,
                               on_eject=lambda u: self.metrics.ejections.labels(u.name).inc())
        self.health = HealthChecker(self.router.remote_upstreams(), self.breaker, gs.health_interval)
        self.forwarder = Forwarder(self.router, self.breaker, RetryBudget(gs.retry_budget), self.metrics)
        self.audit = AuditLog(db) if db is not None and gs.audit else None
        self.tracing = Tracing(gs.otel_endpoint) if gs.otel_endpoint else None
        self.rollouts = RolloutWatcher(RolloutStore(db), self._apply_rollouts, self._load_local) if db else None
        self._replaced: list[Router] = []  # routers a reload replaced, closed once their requests are done

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
        if path in OPEN_PATHS or path.startswith(UI_ASSETS):
            await self.app(scope, receive, send)
            return
        try:
            key = self._authenticate(scope)
        except Unauthorized as exc:
            self.metrics.rejected.labels("unauthorized").inc()
            await _error(send, exc)
            return
        if scope["method"] == "POST" and path in MODEL_PATHS:
            await self._model_request(scope, receive, send, key, *MODEL_PATHS[path])
        elif path == "/metrics" and key is not None and not key.admin:
            await _error(send, Forbidden("metrics need an admin key"))
        elif path.startswith(ADMIN_PATHS) and not (key.admin if key is not None else self.open_admin):
            await _error(send, Forbidden("the admin API needs an admin key" if key is not None else
                                         "the admin API needs an admin key (this server listens beyond loopback)"))
        else:
            await self.app({**scope, KEY_SCOPE: key, GATEWAY_SCOPE: self}, receive, send)

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

    async def reload_routes(self, settings: GatewaySettings) -> None:
        """Serve ``settings.routes`` from the next request on (``aifab apply``, without a restart). Requests
        under way finish on the routes they started on; the old routes' connections are closed after
        ``DRAIN_S``."""
        old = self.router
        new = Router(settings, self.app)
        new.rollouts = old.rollouts
        self.router = self.forwarder.router = new
        self.settings = self.settings.model_copy(update={"routes": settings.routes})
        await self.health.stop()
        self.health = HealthChecker(new.remote_upstreams(), self.breaker, self.settings.health_interval)
        self.health.start()
        self._replaced.append(old)
        asyncio.get_running_loop().call_later(DRAIN_S, lambda: asyncio.ensure_future(self._close_replaced(old)))

    async def _close_replaced(self, router: Router) -> None:
        if router in self._replaced:
            self._replaced.remove(router)
            await router.close()

    async def aclose(self) -> None:
        for router in list(self._replaced):
            await self._close_replaced(router)
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
        token = _token(scope["headers"])
        if self.local_token is not None and token and hmac.compare_digest(token.encode(), self.local_token):
            return LOCAL_ADMIN
        if self.keys is None:
            return None
        required, key = self.keys.check(token)  # one freshness check of the key cache per request
        if not required:
            if self.open_keyless:
                return None
            raise Unauthorized("this server has no active API key and listens beyond loopback: create one with "
                               "`aifab keys create --name admin --admin`")
        if not token:
            raise Unauthorized("this server needs an API key: send 'Authorization: Bearer <key>'")
        if key is None:
            raise Unauthorized("the API key is not valid (unknown or revoked)")
        return key

    # --- model requests --------------------------------------------------------------------------

    async def _model_request(self, scope: Scope, receive: Receive, send: Send, key: ApiKey | None, endpoint: str,
                             upath: str, prefix: str | None, chat: bool, model: type[ModelRequest]) -> None:
        ex = Exchange(f"{prefix or ''}{uuid.uuid4().hex}", endpoint, "", key)  # the id the client will see
        if self.tracing is None:
            await self._exchange(scope, receive, send, ex, upath, prefix, chat, model)
            return
        with self.tracing.start(ex) as span:
            await self._exchange(scope, receive, send, ex, upath, prefix, chat, model)
            self.tracing.annotate(span, ex)

    async def _exchange(self, scope: Scope, receive: Receive, send: Send, ex: Exchange, upath: str,
                        prefix: str | None, chat: bool, model: type[ModelRequest]) -> None:
        endpoint = ex.endpoint
        watcher: asyncio.Future[None] | None = None
        try:
            # the one read, limit, parse and validation of this request: serve gets the object
            req = validate(model, await read_body(receive, self.max_body))
            ex.model = req.model
            ex.stream = isinstance(req, SamplingRequest) and req.stream
            # a client that leaves (while queued, or mid-stream) cancels the work and frees the upstream
            watcher = asyncio.ensure_future(_disconnected(receive, asyncio.current_task(), ex))
            call = Call(req, ex.id, ex.model)
            answer = await self._route(scope, ex, call, endpoint, upath)
            rid = ex.id if prefix else None
            if not answer.ok:
                await self._pass_error(send, ex, answer)
            elif ex.stream:
                await self._stream(send, ex, answer, call, chat)
            else:
                await self._whole(send, ex, answer, call, rid, chat)
        except ClientGone:
            ex.finish(499, "the client closed the connection")
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

    async def _route(self, scope: Scope, ex: Exchange, call: Call, endpoint: str, upath: str) -> Answer:
        key, req = ex.key, call.request
        if key is not None and not key.allows_model(ex.model):
            self.metrics.rejected.labels("forbidden").inc()
            raise Forbidden(f"the key '{key.name}' may not use the model '{ex.model}'", param="model")
        headers = scope["headers"]
        session = _header(headers, b"x-session-id")
        route = self.router.pick(ex.model, session or req.user)
        ex.route = route.name
        P.clamp_max_tokens(req, key, route.settings.max_tokens)
        if self.guardrails is not None:
            refs = P.text_refs(req, operator=self.guardrails.settings.scan_operator_roles)
            checked = [P.read(r) for r in refs]
            result = self.guardrails.check_input(checked)
            ex.verdicts.extend(result.verdicts)
            if result.blocked is not None:
                raise InvalidRequest(self.guardrails.refusal(result.blocked), code="content_filter")
            for ref, old, new in zip(refs, checked, result.texts, strict=True):
                if new != old:
                    P.write(ref, new)
        texts = [P.read(r) for r in P.text_refs(req)]
        if (key.log_content if key is not None else self.settings.log_content):
            ex.request = P.audit_copy(req, self.redact)
            ex.response = []
            call.keep_text = True
        estimate = P.estimate_tokens(texts, len(req.messages) if isinstance(req, ChatCompletionRequest) else 0)
        ex.prompt_tokens = estimate
        if key is not None and self.limiter is not None:
            await self.limiter.admit(key, estimate)
            ex.charged = estimate
        if isinstance(req, SamplingRequest) and req.stream:
            # a remote upstream is asked for usage (Call.encode); the client sees it only if it asked
            ex.want_usage = req.stream_options is not None and req.stream_options.include_usage
        balance = route.settings.prefix_chars if route.settings.balance == "prefix" else None
        token = current_key.set(key)
        try:
            headers = [(b"x-request-id", ex.id.encode())]
            if self.tracing is not None:
                headers += self.tracing.headers()
            return await self.forwarder.forward(ex, route, call, upath, P.affinity(req, texts, session, balance),
                                                headers)
        finally:
            current_key.reset(token)

    async def _whole(self, send: Send, ex: Exchange, answer: Answer, call: Call, rid: str | None, chat: bool) -> None:
        if self.relay and call.reported:  # this process's answer, already the client's: no re-encoding
            body = answer.head
            _take_report(ex, call, relayed=True)
        else:
            try:
                body = rewrite_body(answer.head, ex, rid, chat, self._output_guard, ex.response is not None)
            except (orjson.JSONDecodeError, TypeError, AttributeError) as exc:
                await answer.done(self.breaker, failed=True)
                raise UpstreamError(f"upstream {answer.upstream.name} sent a malformed answer") from exc
            _take_tool_runs(ex, call)
        await answer.done(self.breaker)
        ex.first_text()
        ex.finish(200)  # before the last send: a disconnect seen after it must not count as one
        await _send(send, 200, body, self._headers(ex, answer))

    async def _stream(self, send: Send, ex: Exchange, answer: Answer, call: Call, chat: bool) -> None:
        relayed = self.relay and call.reported  # this process's events, already the client's: they pass as they are
        rw: StreamRewriter | Relay = Relay(call) if relayed else \
            StreamRewriter(ex, ex.id, chat, self._output_guard, ex.want_usage, ex.response is not None)
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
            tail = error_event(UpstreamError(failed, code=code))
        except asyncio.CancelledError:  # the client left: free the upstream at once
            await answer.done(None)
            ex.completion_tokens = ex.completion_tokens or rw.tokens
            _take_report(ex, call, relayed)
            raise
        await answer.done(self.breaker, failed=failed is not None)
        if not rw.usage_seen:
            ex.completion_tokens = rw.tokens
        _take_report(ex, call, relayed)
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
        # the version that answered: this process's (or another aifab's) own header, else the model the
        # route asked the upstream for; a canary split shows here without reading the audit log
        version = _header(answer.reply.headers, VERSION_HEADER) or answer.route.model_at(answer.upstream)
        return [(b"content-type", b"application/json"), (b"x-request-id", ex.id.encode()),
                (b"x-aifab-upstream", answer.upstream.name.encode()), (VERSION_HEADER, version.encode("latin-1"))]

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

    # --- reports (served as routes of the serving app, which finds the gateway in the ASGI scope) ---------

    async def usage(self, caller: ApiKey | None, *, since: str | None = None, of: str | None = None) -> dict[str, Any]:
        """Tokens and requests per key and model from the audit log: the caller's own, or (an admin key)
        everyone's or those of the key ``of`` names."""
        from aifab.gateway.usage import parse_since, usage_report

        if self.db is None:
            raise InvalidRequest("usage needs the state store")
        start = parse_since(since) if since is not None else None
        target = caller
        if of is not None:
            if caller is not None and not caller.admin and of not in (caller.name, caller.id):
                raise Forbidden("only an admin key may read another key's usage")
            if self.keys is None:
                raise NotFound(f"no API key '{of}': this server has none", param="key")
            target = await asyncio.to_thread(self.keys.get, of)
        elif caller is not None and caller.admin:
            target = None
        if self.audit is not None:
            await asyncio.to_thread(self.audit.flush)  # the last answers may still be on their way to the log
        return await asyncio.to_thread(usage_report, self.db, key=target, since=start)

    async def feedback(self, caller: ApiKey | None, body: dict[str, Any]) -> dict[str, Any]:
        """A rating (and correction) of a logged response, by the key that made it."""
        from aifab.feedback import FeedbackStore, feedback_from_request

        if self.db is None:
            raise InvalidRequest("feedback needs the state store")
        given = feedback_from_request(body)
        if self.audit is not None:
            await asyncio.to_thread(self.audit.flush)  # the response may have been answered a moment ago
        store = FeedbackStore(self.db, redact=self.redact)
        return await asyncio.to_thread(store.record, given.response_id, given.rating, correction=given.correction,
                                       comment=given.comment, key=caller)


def _take_report(ex: Exchange, call: Call, relayed: bool) -> None:
    """What this process's serving app reported on ``call`` (nothing, for a remote upstream)."""
    if not call.reported:
        return
    ex.prompt_tokens, ex.completion_tokens = call.prompt_tokens, call.completion_tokens
    if call.context is not None:
        ex.context = call.context
    if relayed:  # nothing read the events: the text, the first token and the tool calls come from the report
        ex.tool_calls = call.tool_calls
        if call.first_token is not None:
            ex.ttft = call.first_token - ex.start
        if ex.response is not None:
            ex.response = call.text
    _take_tool_runs(ex, call)


def _take_tool_runs(ex: Exchange, call: Call) -> None:
    """The tools an app ran in this process: never in its events, so only the report has them."""
    if call.tool_runs:
        ex.tool_calls = (ex.tool_calls or []) + call.tool_runs


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
    status, headers, body = error_response(exc)
    await _send(send, status, body, headers)
