"""Creating and listing API keys, with the scope checks a typo would otherwise slip through."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aifab.config import Settings
from aifab.errors import InvalidRequest
from aifab.gateway.keys import KeyStore
from aifab.identity import ApiKey
from aifab.registry import Registry
from aifab.tools import BUILTIN_TOOLS


class NewKey(BaseModel):
    """What a new key may do. A scope left out (None) is unrestricted; ``[]`` allows nothing."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="unique name (A-Z a-z 0-9 . _ -)")
    models: list[str] | None = Field(None, description="models it may call; default: all")
    collections: list[str] | None = Field(None, description="collections it may read; default: all")
    acl: list[str] | None = Field(None, description="ACL tags its retrieval may see; default: every chunk")
    tools: list[str] | None = Field(None, description="tools it may list and run; default: all")
    rpm: int | None = Field(None, description="requests per minute")
    tpm: int | None = Field(None, description="tokens per minute")
    budget_tokens: int | None = Field(None, description="lifetime token budget")
    max_tokens: int | None = Field(None, description="max_tokens of its requests is clamped to this")
    admin: bool = False
    log_content: bool = False
    allow_training: bool = False
    secret: str | None = Field(None, description="a secret chosen elsewhere (32+ characters); default: a fresh one")


class KeyChange(BaseModel):
    """New scopes, limits or secret of an active key: only the fields given change (null = unrestricted)."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] | None = None
    collections: list[str] | None = None
    acl: list[str] | None = None
    tools: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_tokens: int | None = None
    max_tokens: int | None = None
    admin: bool | None = None
    log_content: bool | None = None
    allow_training: bool | None = None
    secret: str | None = None


def key_dict(key: ApiKey) -> dict[str, Any]:
    return asdict(key)


def create_key(store: KeyStore, settings: Settings, registry: Registry, new: NewKey) -> tuple[ApiKey, str, bool]:
    """The key, its secret (shown once: only its hash is kept) and whether it is the first key (which ends
    keyless access)."""
    if new.models:
        _check_models(new.models, settings, registry)
    if new.tools:
        _check_tools(new.tools, settings)
    first = not store.list()
    key, secret = store.create(**new.model_dump())
    return key, secret, first


def update_key(store: KeyStore, settings: Settings, registry: Registry, name: str, change: KeyChange) -> ApiKey:
    fields = change.model_dump(exclude_unset=True)
    if fields.get("models"):
        _check_models(fields["models"], settings, registry)
    if fields.get("tools"):
        _check_tools(fields["tools"], settings)
    for flag in ("admin", "log_content", "allow_training"):
        if flag in fields and fields[flag] is None:
            fields[flag] = False
    return store.update(name, **fields)


def callable_models(settings: Settings, registry: Registry) -> set[str]:
    """Every model name a client can call: registered models, RAG apps, and gateway routes with their
    aliases."""
    routes = settings.gateway.routes
    return ({p.name for p in registry.list()} | set(settings.apps) | set(routes)
            | {alias for route in routes.values() for alias in route.aliases})


def _check_models(scope: list[str], settings: Settings, registry: Registry) -> None:
    """A scope naming a model that does not exist is almost always a typo: refuse it."""
    known = callable_models(settings, registry)
    unknown = [m for m in scope if m not in known]
    if unknown:
        raise InvalidRequest(f"--models names {', '.join(map(repr, unknown))}, which is neither a registered model, "
                             f"an app nor a route (known: {', '.join(sorted(known))})", param="models")


def _check_tools(scope: list[str], settings: Settings) -> None:
    """As for models: a tool scope names configured ``[tools.*]`` entries or the built-in tools of ``/mcp``."""
    known = set(settings.tools) | set(BUILTIN_TOOLS)
    unknown = [t for t in scope if t not in known]
    if unknown:
        raise InvalidRequest(f"--tools names {', '.join(map(repr, unknown))}, which is neither a [tools.*] entry "
                             f"nor a built-in tool (known: {', '.join(sorted(known))})", param="tools")
