"""OpenTelemetry traces, when ``gateway.otel_endpoint`` is set: one span per model request (model, route,
upstream, status, tokens, attempts), exported over OTLP/HTTP, with the W3C ``traceparent`` passed to the
upstream so its own spans join the trace."""

from __future__ import annotations

from typing import Any

from aifab.errors import MissingDependency
from aifab.gateway.exchange import Exchange


class Tracing:
    def __init__(self, endpoint: str, service: str = "aifab-gateway") -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise MissingDependency("opentelemetry-sdk", "otel") from exc
        from opentelemetry.propagate import inject

        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        url = endpoint.rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
        self.tracer = self.provider.get_tracer("aifab.gateway")
        self._inject = inject

    def start(self, ex: Exchange) -> Any:
        return self.tracer.start_as_current_span(f"gateway {ex.endpoint}", end_on_exit=True)

    def headers(self) -> list[tuple[bytes, bytes]]:
        carrier: dict[str, str] = {}
        self._inject(carrier)
        return [(k.encode(), v.encode()) for k, v in carrier.items()]

    @staticmethod
    def annotate(span: Any, ex: Exchange) -> None:
        span.set_attributes({
            "gen_ai.request.model": ex.model, "aifab.route": ex.route or "", "aifab.upstream": ex.upstream or "",
            "http.response.status_code": ex.status, "gen_ai.usage.input_tokens": ex.prompt_tokens,
            "gen_ai.usage.output_tokens": ex.completion_tokens, "aifab.attempts": ex.attempts,
            "aifab.key": ex.key.name if ex.key else "", "aifab.stream": ex.stream,
        })
        if ex.error:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, ex.error))

    def close(self) -> None:
        self.provider.shutdown()
