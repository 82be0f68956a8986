"""The gateway's seams: how much a caller may spend (``Limiter``), what the guardrails found (``Verdict``), and
where a request goes (``Upstream``). Who is calling (``aifab.identity.ApiKey``) and the detectors over text
(``aifab.redaction``) live below the gateway, since serving, feedback and fine-tuning use them too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from aifab.api import Call

from aifab.identity import ApiKey

Action = Literal["flag", "redact", "block"]


@dataclass(frozen=True)
class Verdict:
    """One guardrail finding. ``detail`` describes it without the matched text (a count, an entity type)."""

    guard: str
    category: str
    action: Action
    stage: Literal["input", "output"]
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"guard": self.guard, "category": self.category, "action": self.action, "stage": self.stage,
                "detail": self.detail}


class Limiter(Protocol):
    """Requests/min, tokens/min and token budgets per key. Raises ``RateLimited`` (429 + Retry-After)."""

    async def admit(self, key: ApiKey, prompt_tokens: int) -> None:
        """Take one request and ``prompt_tokens`` (charged up front) or raise ``RateLimited``."""
        ...

    async def charge(self, key: ApiKey, tokens: int) -> None:
        """Charge tokens generated (as they stream) or a correction once the true count is known."""
        ...

    async def close(self) -> None: ...


@dataclass
class UpstreamState:
    """Health and load of one pool member, as the balancer reads it."""

    outstanding: int = 0
    healthy: bool = True
    ejected_until: float = 0.0
    consecutive_failures: int = 0
    ejections: int = 0
    half_open: bool = False
    extra: dict[str, float] = field(default_factory=dict)


class Upstream(Protocol):
    """An addressable pool member: this process's own models, or an OpenAI-compatible server."""

    name: str
    weight: float
    state: UpstreamState

    async def send(self, path: str, call: Call, model: str, headers: list[tuple[bytes, bytes]], *, stream: bool,
                   connect_timeout: float, first_byte_timeout: float) -> UpstreamResponse:
        """Send the validated request of ``call`` for ``model`` (the name this upstream serves it under): a
        remote server gets it serialised once, this process's app gets the object."""
        ...

    async def probe(self) -> bool:
        """One active health check."""
        ...

    async def close(self) -> None: ...


class UpstreamResponse(Protocol):
    """Status and headers as soon as they arrive; the body as an async iterator of raw chunks."""

    status: int
    headers: list[tuple[bytes, bytes]]

    def body(self) -> AsyncIterator[bytes]: ...

    async def release(self) -> None: ...
