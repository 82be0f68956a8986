"""A model that is a LoRA adapter over a base another engine already holds: several fine-tuned models
share one copy of their base's weights, and the adapter is chosen per request."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from aifab.engines.protocol import Delta, Embeddings, Engine, EngineHealth, GenerationRequest
from aifab.errors import InvalidRequest
from aifab.registry.package import ModelPackage


class AdapterView:
    """``Engine`` for ``package`` (base weights + adapter ``adapter``), served by ``base``'s engine."""

    def __init__(self, package: ModelPackage, base: Engine, adapter: str) -> None:
        self.package, self.base, self.adapter = package, base, adapter

    @property
    def context_length(self) -> int:
        return self.base.context_length

    def count_tokens(self, text: str) -> int:
        return self.base.count_tokens(text)

    def render_chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        return self.base.render_chat(messages, tools)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        request.adapter = self.adapter
        async for delta in self.base.generate(request):
            yield delta

    async def embed(self, texts: list[str]) -> Embeddings:
        raise InvalidRequest(f"model '{self.package.name}' is a chat model; it does not embed", param="model")

    def health(self) -> EngineHealth:
        return self.base.health()

    async def prompts_read(self) -> None:
        await self.base.prompts_read()

    async def load_adapter(self, name: str, path: str) -> None:
        await self.base.load_adapter(name, path)

    def close(self) -> None:
        """The base's engine owns the weights; closing a view frees nothing."""


def adapter_of(package: ModelPackage) -> tuple[str, str] | None:
    """(adapter name, directory) when ``package`` is a fine-tuned adapter over a safetensors base."""
    if package.format != "safetensors" or not package.adapters:
        return None
    name = package.name if package.name in package.adapters else next(iter(package.adapters))
    return name, package.adapters[name]
