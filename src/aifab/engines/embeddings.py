"""``Engine`` for sentence-transformers embedding packages, with request micro-batching."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from typing import Any

from aifab.config import Settings
from aifab.engines.protocol import Delta, Embeddings, EngineHealth, GenerationRequest
from aifab.engines.registry import register
from aifab.errors import ContextLengthExceeded, InvalidRequest
from aifab.registry.package import ModelPackage


@register("sentence-transformers")
class SentenceTransformerEngine:
    """Concurrent ``embed`` calls are gathered into one ``encode`` call of up to ``embedding_batch``
    texts, run off the event loop."""

    def __init__(self, package: ModelPackage, settings: Settings) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local package never needs the hub
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(settings.threads())
        self.package = package
        self.model = SentenceTransformer(package.path, device="cpu", local_files_only=True)
        self.tokenizer = self.model.tokenizer
        self.context_length = int(self.model.max_seq_length or package.context_length)
        self.batch_size = settings.engines.embedding_batch
        self._pending: list[tuple[list[str], asyncio.Future[list[list[float]]]]] = []
        self._worker: asyncio.Task[None] | None = None
        self._busy = 0

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def render_chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        raise InvalidRequest(f"model '{self.package.name}' is an embedding model; it cannot chat", param="model")

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        raise InvalidRequest(f"model '{self.package.name}' is an embedding model; use /v1/embeddings", param="model")
        yield  # pragma: no cover

    async def embed(self, texts: list[str]) -> Embeddings:
        counts = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        for i, n in enumerate(counts):
            if n > self.context_length:
                raise ContextLengthExceeded(
                    f"input[{i}] has {n} tokens, {n - self.context_length} more than this model's "
                    f"{self.context_length}",
                    param="input",
                )
        fut: asyncio.Future[list[list[float]]] = asyncio.get_running_loop().create_future()
        self._pending.append((texts, fut))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return Embeddings(vectors=await fut, prompt_tokens=sum(counts))

    async def _drain(self) -> None:
        while self._pending:
            group: list[tuple[list[str], asyncio.Future[list[list[float]]]]] = []
            total = 0
            while self._pending and (not group or total + len(self._pending[0][0]) <= self.batch_size):
                texts, fut = self._pending.pop(0)
                group.append((texts, fut))
                total += len(texts)
            flat = [t for texts, _ in group for t in texts]
            self._busy = len(group)
            try:
                vectors = await asyncio.to_thread(self._encode, flat)
            except Exception as exc:
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            finally:
                self._busy = 0
            at = 0
            for texts, fut in group:
                if not fut.done():
                    fut.set_result(vectors[at : at + len(texts)])
                at += len(texts)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        arr = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return arr.tolist()

    async def prompts_read(self) -> None:
        return None

    def health(self) -> EngineHealth:
        return EngineHealth(ok=True, running=self._busy, waiting=len(self._pending))

    async def load_adapter(self, name: str, path: str) -> None:
        raise InvalidRequest("embedding models do not take adapters")

    def close(self) -> None:
        return None
