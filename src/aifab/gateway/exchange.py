"""One model request as the gateway saw it: what the audit log, the metrics and the quota charge read."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aifab.gateway.protocol import Verdict
from aifab.identity import ApiKey


@dataclass
class Exchange:
    id: str
    endpoint: str
    model: str
    key: ApiKey | None
    stream: bool = False
    start: float = field(default_factory=time.perf_counter)
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))
    route: str | None = None
    upstream: str | None = None
    status: int = 0
    error: str | None = None
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft: float | None = None
    end: float | None = None
    want_usage: bool = False  # the client asked for the usage event of a stream
    charged: int = 0  # tokens charged to the key's limits so far (the estimate, then streamed tokens)
    verdicts: list[Verdict] = field(default_factory=list)
    request: dict[str, Any] | None = None  # redacted content, only where the key's policy allows
    response: list[str] | None = None
    context: list[str] | None = None  # chunk ids a RAG app retrieved
    tool_calls: list[dict[str, Any]] | None = None  # [{"name"}] per call; "arguments" where content is kept

    def first_text(self) -> None:
        """Time to first token as a user sees it: the first text (or tool call) the client receives, not the
        first event, which may carry only a role or text still held back by a guard."""
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.start

    def finish(self, status: int, error: str | None = None) -> None:
        self.status, self.end = status, time.perf_counter()
        if error is not None:
            self.error = error[:1024]

    @property
    def latency(self) -> float:
        return (self.end or time.perf_counter()) - self.start

    def row(self) -> dict[str, Any]:
        k = self.key
        return {
            "id": self.id, "ts": self.ts, "key_id": k.id if k else None, "key_name": k.name if k else None,
            "endpoint": self.endpoint, "model": self.model, "route": self.route, "upstream": self.upstream,
            "status": self.status, "error": self.error, "stream": self.stream, "attempts": self.attempts,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "latency_ms": self.latency * 1000, "ttft_ms": None if self.ttft is None else self.ttft * 1000,
            "verdicts": [v.to_dict() for v in self.verdicts], "request": self.request,
            "response": None if self.response is None else "".join(self.response),
            "allow_training": bool(k and k.allow_training), "context": self.context, "tool_calls": self.tool_calls,
        }
