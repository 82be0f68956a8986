"""The ``Engine`` seam: what the server needs from a model runtime, and the plain data it exchanges."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from aifab.engines.tools.protocol import CallFragment
from aifab.registry.package import ModelPackage

FinishReason = Literal["stop", "length", "cancelled", "tool_calls"]


@dataclass
class SamplingParams:
    """OpenAI sampling fields. ``temperature == 0`` is greedy. ``json_schema`` constrains the output
    with a grammar: ``{}`` means any JSON object (``response_format: json_object``). ``max_tokens``
    None means the model package's default, cut to what is left of the context."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    json_schema: dict[str, Any] | None = None
    ignore_eos: bool = False  # keep going past end-of-sequence (benchmarks, tests); stops still apply


@dataclass
class GenerationRequest:
    prompt: str
    sampling: SamplingParams = field(default_factory=SamplingParams)
    adapter: str | None = None  # a LoRA adapter loaded with ``load_adapter``
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    prompt_token_ids: list[int] | None = None  # set by the engine's ``validate``


@dataclass
class Delta:
    """A piece of the answer. The last delta of a generation has ``finish_reason`` set. ``tool_calls``
    holds the pieces of tool calls found in the text (``aifab.engines.tools``); engines leave it empty."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: list[CallFragment] = field(default_factory=list)


@dataclass
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int


@dataclass
class EngineHealth:
    ok: bool
    running: int = 0  # sequences being decoded now
    waiting: int = 0  # requests queued for a slot
    prefilling: int = 0  # requests whose prompt is not read yet (queued, or in a slot and prefilling)
    detail: str = ""


@runtime_checkable
class Engine(Protocol):
    """A loaded model. Generation is continuous-batched inside the engine: callers simply await many
    ``generate`` iterators at once. Engines for embeddings raise ``InvalidRequest`` from ``generate``
    and chat engines from ``embed``."""

    package: ModelPackage

    @property
    def context_length(self) -> int:
        """Tokens one request may hold, as enforced: the package's, cut to the per-sequence KV cache."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def render_chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        """The model's own chat template applied to OpenAI-style messages (``tool_calls`` and ``tool``
        turns included) and the ``tools`` offered, ready for generation."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        """Stream the answer. Raises ``ContextLengthExceeded`` before streaming if the prompt does not
        fit, ``Overloaded`` if the queue is full. Closing the iterator early frees the slot."""
        ...

    async def embed(self, texts: list[str]) -> Embeddings: ...

    def health(self) -> EngineHealth: ...

    async def prompts_read(self) -> None:
        """Returns once no request's prompt waits to be read (``health().prefilling`` is 0): work that can
        wait (attributing a streamed answer) yields the cores to other users' prefill. At once for an
        engine that does not generate."""
        ...

    async def load_adapter(self, name: str, path: str) -> None: ...

    def close(self) -> None: ...
