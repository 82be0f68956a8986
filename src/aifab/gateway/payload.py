"""Reading and editing a validated request (``aifab.api`` models): the texts guardrails check (and redact in
place), the prompt estimate charged up front, the ``max_tokens`` clamp and the affinity key."""

from __future__ import annotations

from typing import Any

from aifab.api import ChatCompletionRequest, CompletionRequest, ModelRequest
from aifab.identity import ApiKey

Ref = tuple[Any, Any]  # (a list and an index, or an object and an attribute) holding a str


OPERATOR_ROLES = frozenset({"system", "developer"})  # the app's own instructions: scanned only with scan_operator_roles


def read(ref: Ref) -> str:
    holder, at = ref
    return holder[at] if isinstance(holder, list) else getattr(holder, at)


def write(ref: Ref, text: str) -> None:
    holder, at = ref
    if isinstance(holder, list):
        holder[at] = text
    else:
        setattr(holder, at, text)


def text_refs(req: ModelRequest, *, operator: bool = True) -> list[Ref]:
    """The request's texts, as places that can be read and rewritten; ``operator=False`` leaves out
    system and developer messages (the guardrails check what users and tools bring in)."""
    refs: list[Ref] = []
    if isinstance(req, ChatCompletionRequest):
        for m in req.messages:
            if not operator and m.role in OPERATOR_ROLES:
                continue
            if isinstance(m.content, str):
                refs.append((m, "content"))
            elif m.content is not None:
                refs.extend((p, "text") for p in m.content if isinstance(p.text, str))
        return refs
    field = "prompt" if isinstance(req, CompletionRequest) else "input"
    value = getattr(req, field)
    if isinstance(value, str):
        refs.append((req, field))
    else:
        refs.extend((value, i) for i in range(len(value)))
    return refs


def estimate_tokens(texts: list[str], messages: int = 0) -> int:
    """Prompt tokens charged before the upstream counts them: ~4 characters a token plus a few per message.
    The difference is charged (or refunded) once the answer's usage is known."""
    return sum(len(t) for t in texts) // 4 + 4 * messages + 1


def clamp_max_tokens(req: ModelRequest, key: ApiKey | None, route_limit: int | None) -> None:
    """Cap the answer's length at the key's and the route's limits (the smaller one)."""
    limits = [n for n in (key.max_tokens if key else None, route_limit) if n]
    if not limits or not isinstance(req, ChatCompletionRequest | CompletionRequest):
        return
    cap = min(limits)
    if isinstance(req, ChatCompletionRequest) and req.max_completion_tokens is not None:
        req.max_completion_tokens = min(req.max_completion_tokens, cap)
    elif req.max_tokens is not None:
        req.max_tokens = min(req.max_tokens, cap)
    else:
        req.max_tokens = cap


def affinity(req: ModelRequest, texts: list[str], session: str | None, prefix_chars: int | None) -> str | None:
    """The key prefix affinity hashes: the session id when the client gives one, else the prompt's start."""
    if session:
        return session
    if req.user:
        return req.user
    if prefix_chars is None:
        return None
    return "".join(texts)[:prefix_chars] or None


def audit_copy(req: ModelRequest, redact: Any) -> dict[str, Any]:
    """What the audit log keeps of a request (only for keys whose policy allows it): the texts redacted."""
    if isinstance(req, ChatCompletionRequest):
        return {"messages": [{"role": m.role, "content": redact(m.text()) if m.content is not None else None}
                             for m in req.messages]}
    field = "prompt" if isinstance(req, CompletionRequest) else "input"
    value = getattr(req, field)
    if isinstance(value, list):
        return {field: [redact(v) for v in value]}
    return {field: redact(value)}
