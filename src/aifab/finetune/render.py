"""Examples to token ids, rendered exactly as the serving engines render chat.

The engines render a conversation with the package's own chat template (``aifab.engines.chat``) and
tokenize the resulting text in one call (``tokenizer(text)``); training does the same, so the model
learns on the very token sequences it will see when served. The loss covers the assistant turns
only: each trained turn's characters are located by rendering the conversation up to it (with and
without the generation prompt), and the tokens whose first character falls in those spans are the
targets. A turn's span ends with its end-of-turn token (``<|im_end|>`` for ChatML), so the model
learns to stop; the whitespace the template puts between turns is not trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aifab.engines.chat import render_chat
from aifab.errors import InvalidRequest
from aifab.finetune.data import Example


@dataclass
class Sequence:
    """Token ids and the positions whose token is a training target (predicted from what precedes)."""

    ids: list[int]
    targets: list[int]  # positions p >= 1: the loss on predicting ids[p] from ids[:p]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Stats:
    """What rendering did to the data: truncated examples, and those left without a target."""

    truncated: int = 0
    dropped: int = 0


class ChatRenderer:
    """Renders examples with one package's template, special tokens and tokenizer."""

    def __init__(self, tokenizer: Any, template: str | None, special_tokens: dict[str, str], *,
                 max_length: int) -> None:
        if not template:
            raise InvalidRequest("the base model has no chat template; fine-tuning on chat data needs one",
                                 param="base")
        if not getattr(tokenizer, "is_fast", False):
            raise InvalidRequest("fine-tuning needs a fast (Rust) tokenizer: tokenizer.json", param="base")
        self.tokenizer = tokenizer
        self.template = template
        self.special = special_tokens
        self.max_length = max_length
        self.stats = Stats()

    def text(self, messages: list[dict[str, Any]], *, generation_prompt: bool) -> str:
        return render_chat(self.template, messages, self.special, add_generation_prompt=generation_prompt)

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """The prompt the engine would feed for ``messages`` (generation prompt appended)."""
        return list(self.tokenizer(self.text(messages, generation_prompt=True))["input_ids"])

    def spans(self, messages: list[dict[str, Any]], line: int = 0) -> tuple[str, list[tuple[int, int]]]:
        """The full text and the character spans of the trained assistant turns."""
        full = self.text(messages, generation_prompt=False)
        spans = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant" or m.get("weight", 1) == 0:
                continue
            before = self.text(messages[:i], generation_prompt=True) if i else ""
            through = self.text(messages[: i + 1], generation_prompt=False)
            if not (full.startswith(through) and through.startswith(before)):
                raise InvalidRequest(
                    f"example at line {line}: the chat template does not render this conversation turn by "
                    "turn (a prefix of the conversation renders differently), so its assistant tokens "
                    "cannot be located", param="dataset")
            spans.append((len(before), len(through.rstrip())))
        return full, spans

    def encode(self, text: str, spans: list[tuple[int, int]]) -> Sequence | None:
        """Tokenize ``text``; targets are the tokens starting inside ``spans``. Truncated to
        ``max_length``; None (and counted) when no target is left."""
        enc = self.tokenizer(text, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        targets = [p for p, (start, _end) in enumerate(enc["offset_mapping"])
                   if p > 0 and any(a <= start < b for a, b in spans)]
        if len(ids) > self.max_length:
            self.stats.truncated += 1
            ids = ids[: self.max_length]
            targets = [p for p in targets if p < self.max_length]
        if not targets:
            self.stats.dropped += 1
            return None
        return Sequence(ids, targets)

    def sft(self, example: Example) -> Sequence | None:
        text, spans = self.spans(example.messages, example.line)
        return self.encode(text, spans)

    def pair(self, example: Example) -> tuple[Sequence, Sequence] | None:
        """A preference example as (chosen, rejected): the prompt turns plus each answer."""
        out = []
        for answer in (example.chosen, example.rejected):
            messages = [*example.messages, {"role": "assistant", "content": answer}]
            out.append(self.sft(Example(messages, line=example.line)))
        chosen, rejected = out
        if chosen is None or rejected is None:
            return None
        return chosen, rejected
