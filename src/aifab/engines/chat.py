"""Chat templates: the model package's own Jinja template, rendered the way transformers renders it."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from aifab.errors import InvalidRequest


def _raise(message: str) -> None:
    raise TemplateError(message)


@lru_cache(maxsize=16)
def _compile(template: str):  # type: ignore[no-untyped-def]
    # Sandboxed: a chat template comes with a model file, which may come from anywhere.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    env.filters["tojson"] = lambda v, indent=None: __import__("json").dumps(v, indent=indent, ensure_ascii=False)
    return env.from_string(template)


def render_chat(
    template: str | None,
    messages: list[dict[str, Any]],
    special_tokens: dict[str, str],
    *,
    add_generation_prompt: bool = True,
    tools: list[dict[str, Any]] | None = None,
) -> str:
    """Render ``messages`` with ``template``; a model without a template cannot chat. ``tools`` goes to
    templates that render a tool list themselves (see :mod:`aifab.engines.tools.formats`)."""
    if not template:
        raise InvalidRequest("this model has no chat template; use /v1/completions", param="model")
    try:
        return _compile(template).render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=special_tokens.get("bos", ""),
            eos_token=special_tokens.get("eos", ""),
            **({"tools": tools} if tools is not None else {}),
        )
    except TemplateError as exc:
        raise InvalidRequest(f"messages rejected by the model's chat template: {exc}", param="messages") from exc
