"""The gateway's Prometheus metrics, per route, upstream and key, in the serving app's registry."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from aifab.gateway.protocol import Upstream

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry, upstreams: Callable[[], list[Upstream]]) -> None:
        r = registry
        self.requests = Counter("aifab_gateway_requests", "Model requests through the gateway",
                                ["route", "upstream", "key", "status"], registry=r)
        self.latency = Histogram("aifab_gateway_request_seconds", "Whole request time", ["route"],
                                 buckets=_BUCKETS, registry=r)
        self.ttft = Histogram("aifab_gateway_time_to_first_token_seconds", "Time to the first text (or tool call) the client receives",
                              ["route"], buckets=_BUCKETS, registry=r)
        self.tokens = Counter("aifab_gateway_tokens", "Tokens by route, key and kind", ["route", "key", "kind"],
                              registry=r)
        self.upstream_failures = Counter("aifab_gateway_upstream_failures", "Failed attempts on an upstream",
                                         ["upstream", "reason"], registry=r)
        self.retries = Counter("aifab_gateway_retries", "Attempts after the first", ["route"], registry=r)
        self.ejections = Counter("aifab_gateway_ejections", "Upstreams ejected by the circuit breaker",
                                 ["upstream"], registry=r)
        self.rejected = Counter("aifab_gateway_rejected", "Requests refused before routing", ["reason"], registry=r)
        self.verdicts = Counter("aifab_gateway_guard_verdicts", "Guardrail verdicts",
                                ["stage", "category", "action"], registry=r)
        r.register(_UpstreamCollector(upstreams))


class _UpstreamCollector:
    def __init__(self, upstreams: Callable[[], list[Upstream]]) -> None:
        self.upstreams = upstreams

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("aifab_gateway_upstream_up", "1 = taking traffic, 0 = ejected", labels=["upstream"])
        busy = GaugeMetricFamily("aifab_gateway_upstream_outstanding", "Requests in flight", labels=["upstream"])
        for u in self.upstreams():
            up.add_metric([u.name], 1.0 if u.state.healthy and u.state.ejected_until <= time.monotonic() else 0.0)
            busy.add_metric([u.name], u.state.outstanding)
        yield up
        yield busy
