"""One validated model request on its way from the gateway to an upstream, and back.

A remote upstream gets it serialised once (``encode``). This process's own serving app gets the object itself
in the ASGI scope (``CALL_SCOPE``): no bytes, no second parse. It answers with the gateway's response id and
the public model name, so that its events can pass through the gateway as they are, and it reports here what
the gateway would otherwise have to read back out of the answer (token counts, the first token, the text
and the retrieved chunks)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from aifab.api.requests import ModelRequest, SamplingRequest

CALL_SCOPE = "aifab.call"


@dataclass
class Call:
    request: ModelRequest
    id: str  # the response id the client sees (and the audit log and feedback use)
    model: str  # the model name the client called: an alias or a route, not the upstream's own name
    keep_text: bool = False  # the gateway keeps the answer's text (for the audit log)
    # reported by this process's serving app (a remote upstream's counts come from its answer instead)
    reported: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token: float | None = None  # time.perf_counter() at the first non-empty content delta
    text: list[str] = field(default_factory=list)
    context: list[str] | None = None  # the chunk ids a RAG app grounded its answer on
    tool_calls: list[dict[str, Any]] | None = None  # [{"name"}] per call; "arguments" too where text is kept
    # calls the server ran itself (an app's tools): [{"name", "arguments", "status", "latency_ms", "server": True}]
    tool_runs: list[dict[str, Any]] = field(default_factory=list)

    def encode(self, model: str) -> bytes:
        """The body for a remote upstream serving it as ``model``: the fields the client set (unknown ones
        included), and, on a stream, the usage event asked for (the gateway counts with it; it drops the
        event again where the client did not ask)."""
        body: dict[str, Any] = self.request.model_dump(mode="json", by_alias=True, exclude_unset=True)
        body["model"] = model
        if isinstance(self.request, SamplingRequest) and self.request.stream:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return orjson.dumps(body)

    def report(self, text: str, completion_tokens: int, prompt_tokens: int) -> None:
        """A piece of the answer went out (``completion_tokens`` generated so far)."""
        self.reported = True
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens
        if text:
            if self.first_token is None:
                self.first_token = time.perf_counter()
            if self.keep_text:
                self.text.append(text)

    def report_calls(self, fragments: list[Any]) -> None:
        """Tool-call fragments went out (``aifab.engines.tools.CallFragment``: a call's first one names it)."""
        for f in fragments:
            if self.first_token is None:  # a call is what the user receives first
                self.first_token = time.perf_counter()
            if f.name is not None:
                self.tool_calls = (self.tool_calls or []) + [{"name": f.name}]
            if self.keep_text and f.arguments and self.tool_calls:
                entry = self.tool_calls[-1]
                entry["arguments"] = entry.get("arguments", "") + f.arguments

    def report_tool_run(self, name: str, arguments: str, status: str, latency_ms: float) -> None:
        """A tool the server ran for an app. Its arguments are kept whatever the key's content policy (the
        gateway redacts them): they are what the server did on the operator's systems."""
        self.reported = True
        self.tool_runs.append({"name": name, "arguments": arguments, "status": status,
                               "latency_ms": round(latency_ms, 2), "server": True})
