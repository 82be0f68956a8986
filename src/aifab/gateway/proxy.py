"""Forwarding with failover: try a route's upstreams in balanced order, retrying (within the retry budget)
on connect errors, 5xx, 429 and timeouts **before the first byte reaches the client**, then the route's
fallback chain. A non-streamed answer is read whole before it is sent, so it can always be retried; a
stream is committed once its first event has arrived."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aifab.api import Call
from aifab.errors import UpstreamError
from aifab.gateway.exchange import Exchange
from aifab.gateway.health import Breaker, RetryBudget
from aifab.gateway.metrics import GatewayMetrics
from aifab.gateway.protocol import Upstream, UpstreamResponse
from aifab.gateway.router import Route, Router
from aifab.gateway.upstreams import UpstreamFailure

JSON = [(b"content-type", b"application/json")]


@dataclass
class Answer:
    """The attempt that won: its reply, the bytes read so far, the rest of the body (streams)."""

    route: Route
    upstream: Upstream
    reply: UpstreamResponse
    head: bytes
    rest: AsyncIterator[bytes] | None
    deadline: float

    @property
    def ok(self) -> bool:
        return self.reply.status < 400

    async def done(self, breaker: Breaker | None, *, failed: bool = False) -> None:
        await self.reply.release()
        self.upstream.state.outstanding -= 1
        if breaker is not None and not self.route.local:
            breaker.failure(self.upstream) if failed else breaker.success(self.upstream)


class Forwarder:
    def __init__(self, router: Router, breaker: Breaker, budget: RetryBudget, metrics: GatewayMetrics) -> None:
        self.router, self.breaker, self.budget, self.metrics = router, breaker, budget, metrics

    async def forward(self, ex: Exchange, route: Route, call: Call, path: str,
                      affinity: str | None, headers: list[tuple[bytes, bytes]]) -> Answer:
        """The first usable answer along ``route`` and its fallbacks, or ``UpstreamError``. A client error
        (4xx other than 429) from an upstream is an answer too: it is the caller's to see, not to retry."""
        self.budget.request()
        last, timed_out = "no upstream", False
        chain = [route, *(self.router.resolve(name) for name in route.settings.fallback)]
        for r in chain:
            for up in r.candidates(affinity)[: 1 + r.settings.retries]:
                if ex.attempts > 0:
                    if not self.budget.try_retry():
                        raise UpstreamError(f"'{ex.model}': {last}; the retry budget is spent", code="retry_budget")
                    self.metrics.retries.labels(route.name).inc()
                ex.attempts += 1
                ex.route, ex.upstream = r.name, up.name
                try:
                    answer = await self._attempt(ex, r, up, call, path, headers)
                except UpstreamFailure as exc:
                    last, timed_out = f"upstream {up.name}: {exc}", exc.timeout
                    self.metrics.upstream_failures.labels(up.name, "timeout" if exc.timeout else "connect").inc()
                    if not r.local:
                        self.breaker.failure(up, hard=exc.hard)
                    continue
                if answer.reply.status >= 500 or answer.reply.status == 429:
                    last, timed_out = f"upstream {up.name} answered {answer.reply.status}", False
                    self.metrics.upstream_failures.labels(up.name, str(answer.reply.status)).inc()
                    if r.local:  # this process's own answer (e.g. its queue is full): the client's to see
                        return answer
                    await answer.done(self.breaker if answer.reply.status >= 500 else None,
                                      failed=answer.reply.status >= 500)
                    continue
                if answer.reply.status in (401, 403) and not r.local:
                    await answer.done(None)
                    raise UpstreamError(f"upstream {up.name} refused the gateway's credentials "
                                        f"({answer.reply.status}); check its api_key_env/api_key_file")
                return answer
        raise UpstreamError(f"every upstream of '{ex.model}' failed: {last}",
                            status_code=504 if timed_out else 502, code="upstream_timeout" if timed_out else None)

    async def _attempt(self, ex: Exchange, route: Route, up: Upstream, call: Call, path: str,
                       headers: list[tuple[bytes, bytes]]) -> Answer:
        s = route.settings
        deadline = time.monotonic() + s.total_timeout
        up.state.outstanding += 1
        reply = None
        try:
            reply = await up.send(path, call, route.model_at(up), headers, stream=ex.stream,
                                  connect_timeout=s.connect_timeout, first_byte_timeout=s.first_token_timeout)
            chunks = reply.body()
            head = b""
            if not ex.stream or reply.status >= 400:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    async for chunk in chunks:
                        head += chunk
                return Answer(route, up, reply, head, None, deadline)
            async with asyncio.timeout(s.first_token_timeout):
                while b"\n\n" not in head:  # the first whole event: before it, a failure can still be retried
                    head += await anext(chunks)
            return Answer(route, up, reply, head, chunks, deadline)
        except (UpstreamFailure, StopAsyncIteration, TimeoutError) as exc:
            up.state.outstanding -= 1
            if reply is not None:
                await reply.release()
            if isinstance(exc, UpstreamFailure):
                raise
            if isinstance(exc, TimeoutError):
                raise UpstreamFailure("no answer within the timeout", timeout=True) from exc
            raise UpstreamFailure("the stream ended before its first event") from exc
        except BaseException:
            up.state.outstanding -= 1
            if reply is not None:
                await reply.release()
            raise
