"""``Engine`` for safetensors (transformers) model packages, over :class:`TorchRuntime`."""

from __future__ import annotations

import asyncio
from typing import Any

from aifab.config import Settings
from aifab.engines.generative import GenerativeEngine
from aifab.engines.protocol import GenerationRequest
from aifab.engines.registry import register
from aifab.engines.torch.runtime import TorchRuntime
from aifab.registry.package import ModelPackage


@register("torch")
class TorchEngine(GenerativeEngine):
    """transformers causal LMs in float32 with continuous batching, JSON grammars and LoRA adapters."""

    def __init__(self, package: ModelPackage, settings: Settings) -> None:
        options = self.runtime_options(package, settings)
        self.runtime = TorchRuntime(package.path, prefix_cache=settings.engines.prefix_cache, **options)
        for name, path in package.adapters.items():
            self.runtime.load_adapter(name, path)
        super().__init__(
            package, self.runtime, context_length=options["ctx_per_seq"], max_queue=settings.serve.max_queue,
            prefill_chunk=settings.engines.prefill_chunk,
            first_tokens=settings.engines.first_tokens,
        )

    def tokenize(self, text: str) -> list[int]:
        return self.runtime.tokenize(text)

    def prepare(self, request: GenerationRequest, *args: Any, **kwargs: Any) -> list[int]:
        """Also reject, before streaming, an unknown adapter or a JSON schema the grammar cannot take."""
        self.runtime.check_adapter(request.adapter)
        if request.sampling.json_schema is not None:
            self.runtime.grammars.compile(request.sampling.json_schema)  # cached for ``start``
        return super().prepare(request, *args, **kwargs)

    async def load_adapter(self, name: str, path: str) -> None:
        # Off the event loop; the runtime's lock waits for the current decode step to end.
        await asyncio.to_thread(self.runtime.load_adapter, name, path)

    def close(self) -> None:
        super().close()
        self.runtime.close()
