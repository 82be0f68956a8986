"""``Engine`` for GGUF model packages, over :class:`LlamaCppRuntime`."""

from __future__ import annotations

from aifab.config import Settings
from aifab.engines.generative import GenerativeEngine
from aifab.engines.llamacpp.runtime import LlamaCppRuntime
from aifab.engines.llamacpp.weights import weights_for
from aifab.engines.registry import register
from aifab.registry.package import ModelPackage


@register("llamacpp")
class LlamaCppEngine(GenerativeEngine):
    """GGUF models with continuous batching in llama.cpp; the default chat engine."""

    def __init__(self, package: ModelPackage, settings: Settings) -> None:
        options = self.runtime_options(package, settings)
        path = weights_for(package.path, settings.engines.cpu_weights, lambda: settings.cache_dir("gguf"))
        self.runtime = LlamaCppRuntime(path, kv_cache_type=settings.engines.kv_cache_type,
                                       prefix_cache=settings.engines.prefix_cache, **options)
        super().__init__(
            package, self.runtime, context_length=options["ctx_per_seq"], max_queue=settings.serve.max_queue,
            prefill_chunk=settings.engines.prefill_chunk,
            first_tokens=settings.engines.first_tokens,
        )
        # The GGUF stores special tokens as ids; the chat template wants their text.
        self._special = {
            k: self.runtime.token_text(int(v)) for k, v in package.special_tokens.items() if str(v).isdigit()
        }

    def tokenize(self, text: str) -> list[int]:
        return self.runtime.tokenize(text)

    def special_tokens(self) -> dict[str, str]:
        return self._special

    def close(self) -> None:
        super().close()
        self.runtime.close()
