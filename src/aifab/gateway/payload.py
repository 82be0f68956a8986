"""Reading and editing a request body: the texts guardrails check (and redact in place), the prompt
estimate charged up front, the ``max_tokens`` clamp and the affinity key."""

from __future__ import annotations

from typing import Any

from aifab.errors import InvalidRequest
from aifab.identity import ApiKey

Ref = tuple[Any, Any]  # (container, index or key): container[index] is a str


OPERATOR_ROLES = frozenset({"system", "developer"})  # the app's own instructions: scanned only with scan_operator_roles


def text_refs(payload: dict[str, Any], endpoint: str, *, operator: bool = True) -> list[Ref]:
    """The request's texts, as places that can be read and rewritten; ``operator=False`` leaves out
    system and developer messages (the guardrails check what users and tools bring in)."""
    refs: list[Ref] = []
    if endpoint == "chat.completions":
        messages = payload.get("messages")
        if not isinstance(messages, list):
            raise InvalidRequest("'messages' must be a list of messages", param="messages")
        for m in messages:
            if not isinstance(m, dict):
                raise InvalidRequest("each message must be an object with 'role' and 'content'", param="messages")
            if not operator and m.get("role") in OPERATOR_ROLES:
                continue
            content = m.get("content")
            if isinstance(content, str):
                refs.append((m, "content"))
            elif isinstance(content, list):
                refs.extend((p, "text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        return refs
    field = "prompt" if endpoint == "completions" else "input"
    value = payload.get(field)
    if isinstance(value, str):
        refs.append((payload, field))
    elif isinstance(value, list):
        refs.extend((value, i) for i, v in enumerate(value) if isinstance(v, str))
    return refs


def estimate_tokens(texts: list[str], messages: int = 0) -> int:
    """Prompt tokens charged before the upstream counts them: ~4 characters a token plus a few per message.
    The difference is charged (or refunded) once the answer's usage is known."""
    return sum(len(t) for t in texts) // 4 + 4 * messages + 1


def clamp_max_tokens(payload: dict[str, Any], key: ApiKey | None, route_limit: int | None) -> None:
    limits = [n for n in (key.max_tokens if key else None, route_limit) if n]
    if not limits:
        return
    cap = min(limits)
    for field in ("max_completion_tokens", "max_tokens"):
        if field in payload and payload[field] is not None:
            if not isinstance(payload[field], int) or payload[field] < 1:
                raise InvalidRequest(f"'{field}' must be a positive integer", param=field)
            payload[field] = min(payload[field], cap)
            return
    payload["max_tokens"] = cap


def affinity(payload: dict[str, Any], texts: list[str], session: str | None, prefix_chars: int | None) -> str | None:
    """The key prefix affinity hashes: the session id when the client gives one, else the prompt's start."""
    if session:
        return session
    user = payload.get("user")
    if isinstance(user, str) and user:
        return user
    if prefix_chars is None:
        return None
    return "".join(texts)[:prefix_chars] or None


def audit_copy(payload: dict[str, Any], endpoint: str, redact: Any) -> dict[str, Any]:
    """What the audit log keeps of a request (only for keys whose policy allows it): the texts redacted."""
    if endpoint == "chat.completions":
        messages = []
        for m in payload.get("messages") or []:
            content = m.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            messages.append({"role": m.get("role"), "content": redact(content) if isinstance(content, str) else None})
        return {"messages": messages}
    field = "prompt" if endpoint == "completions" else "input"
    value = payload.get(field)
    if isinstance(value, list):
        return {field: [redact(v) if isinstance(v, str) else None for v in value]}
    return {field: redact(value) if isinstance(value, str) else None}
