"""Who is calling: an API key as every layer sees it (never the secret), and the current request's key.

The gateway authenticates the caller and sets ``current_key`` for the request (and, for the in-process hop,
puts it into the ASGI scope under ``KEY_SCOPE``); serving applies the key's scopes, feedback and fine-tuning
record whose data it is. It lives in the foundations so that none of them imports the gateway."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from datetime import datetime

KEY_SCOPE = "aifab.key"


@dataclass(frozen=True)
class ApiKey:
    """A key as the gateway sees it (never the secret). Scope tuples: None = unrestricted."""

    id: str
    name: str
    prefix: str
    models: tuple[str, ...] | None = None
    collections: tuple[str, ...] | None = None
    acl: tuple[str, ...] | None = None
    tools: tuple[str, ...] | None = None
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

    def allows_tool(self, name: str) -> bool:
        """Whether the key may list and run the tool ``name``: a scope entry is a ``[tools.NAME]`` entry (which
        covers all its ``NAME-*`` tools) or a tool's own name; ``()`` allows none."""
        if self.admin or self.tools is None:
            return True
        return any(name == t or name.startswith(t + "-") for t in self.tools)

    def acl_filter(self) -> frozenset[str] | None:
        """The ACL tags retrieval filters by for this key (None = every chunk)."""
        return None if self.admin or self.acl is None else frozenset(self.acl)


# The caller's key for the request being handled (None: no key needed, a loopback server with no keys).
current_key: contextvars.ContextVar[ApiKey | None] = contextvars.ContextVar("aifab_current_key", default=None)
