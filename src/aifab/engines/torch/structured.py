"""Structured output for the torch engine: JSON schemas compiled to token grammars with xgrammar.

Each constrained sequence gets a :class:`JsonConstraint` (an xgrammar ``GrammarMatcher``). Before
sampling, its token bitmask removes every token that would break the grammar; after sampling, the
token is fed to the matcher. Nothing is retried or repaired afterwards.

A grammar alone does not make a sequence *end*: a model may keep writing inside a string forever.
So when a sequence nears ``max_tokens`` it switches to *closing* mode and picks, among the tokens the
grammar allows, the first of ``" } ] , 0`` (close the string/object/array, move on, the shortest
number), else the model's best allowed token. That walks any JSON value to its end in a few tokens,
so the output is complete JSON and ends with ``finish_reason == "stop"``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import torch

from aifab.errors import InvalidRequest

try:
    import xgrammar as xgr
except ImportError:  # pragma: no cover - depends on the install
    xgr = None  # type: ignore[assignment]

CLOSERS = ['"', "}", "]", ",", "0"]  # closing-mode preference, first allowed wins


def closing_margin(max_tokens: int) -> int:
    """Tokens before ``max_tokens`` at which a constrained sequence starts closing its JSON."""
    return max(16, min(64, max_tokens // 4))


class JsonGrammars:
    """Compiles (and caches) JSON-schema grammars for one tokenizer."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        vocab_size: int,
        stop_ids: list[int],
        piece: Callable[[int], bytes],
        threads: int,
    ) -> None:
        self.vocab_size = vocab_size
        self._compiler: Any = None
        self._closers: list[int] = []
        if xgr is None:
            return
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
        self._compiler = xgr.GrammarCompiler(info, max_threads=max(1, threads), cache_enabled=True)
        # Single-character tokens of the closers, in preference order.
        by_text: dict[bytes, int] = {}
        for tok in range(min(vocab_size, len(tokenizer))):
            b = piece(tok)
            if len(b) == 1 and b.decode("latin-1") in CLOSERS:
                by_text.setdefault(b, tok)
        self._closers = [by_text[c.encode()] for c in CLOSERS if c.encode() in by_text]

    @property
    def available(self) -> bool:
        return self._compiler is not None

    def compile(self, schema: dict[str, Any]) -> Any:
        """The compiled grammar for ``schema`` (``{}``: any JSON object). Raises ``InvalidRequest``."""
        if self._compiler is None:
            raise InvalidRequest(
                "structured output in the torch engine needs xgrammar: pip install 'aifab[structured]'",
                param="response_format",
            )
        target = schema or {"type": "object"}
        try:
            # No free whitespace: a model cannot stall in an endless run of spaces or newlines.
            return self._compiler.compile_json_schema(json.dumps(target), any_whitespace=False)
        except Exception as exc:  # xgrammar raises plain RuntimeError/ValueError on bad schemas
            raise InvalidRequest(f"unsupported JSON schema: {exc}", param="response_format") from exc

    def constraint(self, schema: dict[str, Any]) -> JsonConstraint:
        return JsonConstraint(xgr.GrammarMatcher(self.compile(schema)), self._closers)

    def new_bitmask(self, rows: int) -> torch.Tensor:
        return xgr.allocate_token_bitmask(rows, self.vocab_size)

    def apply(self, logits: torch.Tensor, bitmask: torch.Tensor, rows: list[int]) -> None:
        """Set to -inf, in place, the logits of the tokens the grammars of ``rows`` forbid."""
        xgr.apply_token_bitmask_inplace(logits, bitmask, indices=rows)


class JsonConstraint:
    """One sequence's position in its grammar."""

    def __init__(self, matcher: Any, closers: list[int]) -> None:
        self.matcher = matcher
        self.closers = closers

    def fill(self, bitmask: torch.Tensor, row: int) -> None:
        self.matcher.fill_next_token_bitmask(bitmask, row)

    def closing_choice(self, bitmask: torch.Tensor, row: int) -> int | None:
        """The first closer token the grammar allows now (closing mode), or None."""
        words = bitmask[row]
        for tok in self.closers:
            if (int(words[tok >> 5]) >> (tok & 31)) & 1:
                return tok
        return None

    def accept(self, token: int) -> None:
        if not self.matcher.accept_token(token):
            raise RuntimeError(f"token {token} was sampled outside the grammar")
