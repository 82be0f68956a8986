"""The gateway's seams: who is calling (``ApiKey``), how much they may spend (``Limiter``), what is checked
on the text going in and out (``Guard``), and where a request goes (``Upstream``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from aifab.api import Call

Action = Literal["flag", "redact", "block"]


@dataclass(frozen=True)
class ApiKey:
    """A key as the gateway sees it (never the secret). Scope tuples: None = unrestricted."""

    id: str
    name: str
    prefix: str
    models: tuple[str, ...] | None = None
    collections: tuple[str, ...] | None = None
    acl: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_tokens: int | None = None
    max_tokens: int | None = None
    admin: bool = False
    log_content: bool = False
    allow_training: bool = False
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    def allows_model(self, name: str) -> bool:
        return self.admin or self.models is None or name in self.models

    def allows_collection(self, name: str) -> bool:
        return self.admin or self.collections is None or name in self.collections

    def acl_filter(self) -> frozenset[str] | None:
        """The ACL tags retrieval filters by for this key (None = every chunk)."""
        return None if self.admin or self.acl is None else frozenset(self.acl)


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


@dataclass(frozen=True)
class Finding:
    """A span of text a guard matched, with the category and the placeholder that replaces it on redact."""

    start: int
    end: int
    category: str
    placeholder: str = "[REDACTED]"


class Guard(Protocol):
    """A detector over text. The pipeline decides what to do with its findings."""

    name: str
    kind: Literal["pii", "secrets", "injection"]

    def scan(self, text: str) -> list[Finding]: ...


class StreamGuard(Guard, Protocol):
    """A guard that can check a stream: besides the findings, it says from where the text could still become
    a finding once more arrives, so that only that tail is held back."""

    def watch(self, text: str, start: int = 0) -> tuple[list[Finding], int]:
        """The findings in ``text`` that end after ``start``, and the index (at or after ``start``) where the
        earliest possible future finding begins (``len(text)`` if none can)."""
        ...


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
