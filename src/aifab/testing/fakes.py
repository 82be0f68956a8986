"""Fakes for tests (ours and users'): an engine that needs no model weights.

``FakeEngine`` runs the real continuous-batching scheduler over ``FakeRuntime``, a byte-level "model"
that answers with a fixed reply (or echoes the prompt) after, when sampling, a number drawn from
the seed, so everything above the runtime — stop
strings, limits, streaming, cancellation, the HTTP layer — is exercised for real.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from aifab.engines.batching import Sequence
from aifab.engines.generative import GenerativeEngine
from aifab.errors import InvalidRequest
from aifab.registry.package import GenerationDefaults, ModelPackage

EOS = 256
_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"


class FakeRuntime:
    """Tokens are UTF-8 bytes plus EOS=256 (or, with ``word_tokens``, one word a token). The reply is
    ``reply`` (or the prompt, if None; or, if callable, what it returns for the prompt: a scripted model
    that answers by what the conversation holds so far), then EOS.
    ``step_delay`` makes each step take time, so tests can observe batching and cancellation."""

    def __init__(self, reply: str | Callable[[str], str] | None = "Hello from the fake model.", *, max_batch: int = 4,
                 step_delay: float = 0.0, word_tokens: bool = False) -> None:
        self.reply = reply
        # word_tokens: the reply comes one word (with its leading space) per token, as a real BPE
        # vocabulary mostly emits prose; tokens above EOS index ``self.words``
        self.word_tokens = word_tokens
        self.words: list[bytes] = []
        self.max_batch = max_batch
        self.max_step_tokens = 4096
        self.step_delay = step_delay
        self.batch_sizes: list[int] = []  # sequences per step, for assertions
        self.lock = threading.Lock()

    def tokenize(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def start(self, seq: Sequence) -> None:
        if seq.request.sampling.json_schema is not None:
            raise InvalidRequest("the fake engine has no grammar support", param="response_format")
        sp = seq.request.sampling
        prompt = bytes(seq.prompt_ids).decode("utf-8", "replace")
        answer = prompt if self.reply is None else self.reply(prompt) if callable(self.reply) else self.reply
        if sp.temperature > 0:  # "sampling": a number drawn from the seed, so seeds matter as they should
            answer = f"{random.Random(sp.seed).randint(0, 10**6)} {answer}"
        seq.state = (self._word_ids(answer) if self.word_tokens else list(answer.encode("utf-8"))) + [EOS]

    def _word_ids(self, answer: str) -> list[int]:
        ids = []
        for word in re.findall(r"\s*\S+|\s+", answer):
            with self.lock:
                self.words.append(word.encode("utf-8"))
                ids.append(EOS + len(self.words))
        return ids

    def step(self, seqs: list[Sequence], feeds: list[list[int]]) -> list[int | None]:
        with self.lock:
            self.batch_sizes.append(len(seqs))
        if self.step_delay:
            time.sleep(self.step_delay)
        out: list[int | None] = []
        for seq, feed in zip(seqs, feeds, strict=True):
            # past the reply (ignore_eos): EOS again, as a model that has nothing more to say
            out.append(seq.state[min(len(seq.generated), len(seq.state) - 1)] if seq.completes(feed) else None)
        return out

    def release(self, seq: Sequence) -> None:
        seq.state = None

    def piece(self, token: int) -> bytes:
        if token == EOS:
            return b""
        return self.words[token - EOS - 1] if token > EOS else bytes([token])

    def is_end(self, token: int) -> bool:
        return token == EOS


class FakeEngine(GenerativeEngine):
    """A chat ``Engine`` with a tiny context, backed by :class:`FakeRuntime`."""

    def __init__(self, name: str = "fake-chat", runtime: FakeRuntime | None = None, *,
                 context_length: int = 512, max_queue: int = 16, **package_fields: Any) -> None:
        self.runtime = runtime or FakeRuntime()
        package = ModelPackage(
            name=name, kind="chat", format="gguf", path="/nonexistent/fake.gguf", chat_template=_TEMPLATE,
            context_length=context_length, generation=GenerationDefaults(max_tokens=64), **package_fields,
        )
        super().__init__(package, self.runtime, context_length=context_length, max_queue=max_queue)

    def tokenize(self, text: str) -> list[int]:
        return self.runtime.tokenize(text)
