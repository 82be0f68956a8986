"""Prometheus metrics of one server (its own registry: two apps in one process never mix counts)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, queue_depths: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("aifab_requests", "HTTP requests", ["route", "status"], registry=r)
        self.errors = Counter("aifab_errors", "Requests answered with an error", ["route", "type"], registry=r)
        self.ttft = Histogram(
            "aifab_time_to_first_token_seconds", "Time to first token", ["model"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.itl = Histogram(
            "aifab_inter_token_latency_seconds", "Time between streamed tokens", ["model"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28), registry=r,
        )
        self.tokens_in = Counter("aifab_prompt_tokens", "Prompt tokens processed", ["model"], registry=r)
        self.tokens_out = Counter("aifab_completion_tokens", "Completion tokens generated", ["model"], registry=r)
        r.register(_QueueCollector(queue_depths))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _QueueCollector:
    """Reads the engines' queue depth and running count at scrape time."""

    def __init__(self, read: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        waiting = GaugeMetricFamily("aifab_queue_depth", "Requests waiting for a slot", labels=["model"])
        running = GaugeMetricFamily("aifab_running_sequences", "Sequences being decoded", labels=["model"])
        for model, (run, wait) in self.read().items():
            waiting.add_metric([model], wait)
            running.add_metric([model], run)
        yield waiting
        yield running
