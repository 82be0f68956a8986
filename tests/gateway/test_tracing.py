"""OpenTelemetry: with ``gateway.otel_endpoint`` set, each model request leaves a span at the collector."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from aifab.config import Settings
from aifab.gateway.front import Gateway
from aifab.serve import ModelPool, create_app
from aifab.testing import FakeUpstream
from aifab.testing.server import ThreadedServer, free_port

pytest.importorskip("opentelemetry.sdk")
pytestmark = pytest.mark.integration


class Collector(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802
        Collector.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_request_becomes_a_span_with_route_upstream_and_tokens():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    port = free_port()
    collector = HTTPServer(("127.0.0.1", port), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        with FakeUpstream(name="a") as up:
            settings = Settings(gateway={"routes": {"chat": {"upstreams": [{"url": up.url, "name": "a"}]}},
                                         "otel_endpoint": f"http://127.0.0.1:{port}"})
            with ThreadedServer(Gateway(create_app(ModelPool({})), settings)) as gw:
                r = httpx.post(gw.url + "/v1/chat/completions", timeout=10,
                               json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
                assert r.status_code == 200
    finally:
        collector.shutdown()
    spans = []
    for body in Collector.received:
        req = ExportTraceServiceRequest.FromString(body)
        spans += [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    span = next(s for s in spans if s.name == "gateway chat.completions")
    attrs = {a.key: (a.value.string_value or a.value.int_value) for a in span.attributes}
    assert attrs["aifab.route"] == "chat" and attrs["aifab.upstream"] == "a"
    assert attrs["http.response.status_code"] == 200 and attrs["gen_ai.usage.output_tokens"] > 0
