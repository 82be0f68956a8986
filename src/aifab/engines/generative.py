"""Shared code of the engines that generate text: prompt checks, chat rendering, batching, health."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from aifab.config import Settings
from aifab.engines.batching import BatchScheduler, Runtime
from aifab.engines.chat import render_chat
from aifab.engines.protocol import Delta, Embeddings, EngineHealth, GenerationRequest
from aifab.engines.tools.formats import render_with_tools
from aifab.errors import ContextLengthExceeded, InvalidRequest
from aifab.registry.package import ModelPackage


class GenerativeEngine:
    """An ``Engine`` over a :class:`Runtime`; subclasses build the runtime and tokenizer."""

    package: ModelPackage
    context_length: int  # tokens one sequence may hold (prompt + completion)

    def __init__(
        self, package: ModelPackage, runtime: Runtime, *, context_length: int, max_queue: int, prefill_chunk: int = 256,
        first_tokens: int = 3,
    ) -> None:
        self.package = package
        self.context_length = context_length
        self._runtime = runtime
        self._scheduler = BatchScheduler(
            runtime, max_queue=max_queue, prefill_chunk=prefill_chunk, first_tokens=first_tokens, name=package.name
        )

    @staticmethod
    def runtime_options(package: ModelPackage, settings: Settings) -> dict[str, int]:
        """What every runtime is built with: slots, per-sequence context and threads."""
        return {
            "max_batch": settings.engines.max_batch,
            "ctx_per_seq": min(package.context_length, settings.engines.context_per_sequence),
            "threads": settings.threads(),
        }

    def tokenize(self, text: str) -> list[int]:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def special_tokens(self) -> dict[str, str]:
        return self.package.special_tokens

    def render_chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        if tools or any(m.get("tool_calls") or m.get("role") == "tool" for m in messages):
            return render_with_tools(self.package.chat_template, messages, self.special_tokens(), tools)
        return render_chat(self.package.chat_template, messages, self.special_tokens())

    def prepare(self, request: GenerationRequest) -> list[int]:
        """Tokenize and check that the request fits the context; fill in ``max_tokens`` if unset."""
        ids = self.tokenize(request.prompt)
        if not ids:
            raise InvalidRequest("the prompt is empty", param="prompt")
        room = self.context_length - len(ids)
        sp = request.sampling
        if room <= 0:
            raise ContextLengthExceeded(
                f"this model's context is {self.context_length} tokens and the prompt has {len(ids)}: "
                f"shorten it by at least {len(ids) - self.context_length + 1} tokens to leave room for an answer",
                param="messages",
            )
        if sp.max_tokens is None:
            sp.max_tokens = min(self.package.generation.max_tokens, room)
        elif sp.max_tokens > room:
            raise ContextLengthExceeded(
                f"this model's context is {self.context_length} tokens, but {len(ids)} prompt tokens + "
                f"max_tokens {sp.max_tokens} = {len(ids) + sp.max_tokens}: "
                f"{len(ids) + sp.max_tokens - self.context_length} too many; lower max_tokens or shorten the prompt",
                param="max_tokens",
            )
        request.prompt_token_ids = ids
        return ids

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        ids = request.prompt_token_ids or self.prepare(request)
        stream = await self._scheduler.submit(request, ids)
        async for delta in stream:
            yield delta

    async def embed(self, texts: list[str]) -> Embeddings:
        raise InvalidRequest(f"model '{self.package.name}' does not produce embeddings", param="model")

    async def prompts_read(self) -> None:
        await self._scheduler.prompts_read()

    def health(self) -> EngineHealth:
        s = self._scheduler
        return EngineHealth(ok=True, running=s.running, waiting=s.waiting, prefilling=s.prefilling)

    async def load_adapter(self, name: str, path: str) -> None:
        raise InvalidRequest(f"model '{self.package.name}' ({self.package.format}) cannot load adapters")

    def close(self) -> None:
        self._scheduler.close()
