"""Per-sequence sampling over a batch of logits: penalties, grammar masks, temperature, top-p, seeds.

Every sequence has its own ``torch.Generator``: with a ``seed`` the same input gives the same output
whatever else shares the batch; without one it is seeded from the OS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from aifab.engines.protocol import SamplingParams
from aifab.engines.torch.structured import JsonConstraint, JsonGrammars, closing_margin


@dataclass
class SeqSampler:
    """How one sequence picks its tokens, and what it has picked (for the penalties)."""

    params: SamplingParams
    generator: torch.Generator
    grammar: JsonConstraint | None = None
    counts: dict[int, int] = field(default_factory=dict)  # generated token -> times

    @classmethod
    def create(cls, params: SamplingParams, grammar: JsonConstraint | None) -> SeqSampler:
        gen = torch.Generator()
        if params.seed is None:
            gen.seed()
        else:
            gen.manual_seed(params.seed & 0xFFFF_FFFF_FFFF_FFFF)
        return cls(params, gen, grammar)

    @property
    def greedy(self) -> bool:
        return self.params.temperature <= 0


def _apply_penalties(logits: torch.Tensor, samplers: list[SeqSampler]) -> None:
    """OpenAI presence/frequency penalties over the tokens generated so far, in place."""
    for row, s in enumerate(samplers):
        p, f = s.params.presence_penalty, s.params.frequency_penalty
        if not s.counts or (p == 0 and f == 0):
            continue
        ids = torch.tensor(list(s.counts), dtype=torch.long)
        n = torch.tensor(list(s.counts.values()), dtype=logits.dtype)
        logits[row, ids] -= n * f + p


def _draw(probs: torch.Tensor, top_p: float, generator: torch.Generator) -> int:
    """Sample one token from ``probs`` restricted to its nucleus ``top_p`` (the top token always stays).

    The nucleus is searched among the top-k tokens, k growing until it holds ``top_p`` of the mass:
    far cheaper than sorting the whole vocabulary, with the same result.
    """
    if top_p >= 1.0:
        return int(torch.multinomial(probs, 1, generator=generator))
    k = min(probs.numel(), 256)
    while True:
        vals, idx = probs.topk(k)
        if k == probs.numel() or float(vals.sum()) >= top_p:
            break
        k = min(probs.numel(), k * 8)
    keep = (vals.cumsum(0) - vals) < top_p
    keep[0] = True
    vals, idx = vals[keep], idx[keep]
    return int(idx[torch.multinomial(vals, 1, generator=generator)])


def sample(
    samplers: list[SeqSampler],
    logits: torch.Tensor,
    remaining: list[int],
    grammars: JsonGrammars | None,
) -> list[int]:
    """One token per row of ``logits`` ([rows, vocab], float32, modified in place).

    ``remaining[i]`` is how many tokens row ``i`` may still generate (for closing its JSON in time).
    """
    _apply_penalties(logits, samplers)
    chosen: dict[int, int] = {}
    constrained = {i: s.grammar for i, s in enumerate(samplers) if s.grammar is not None}
    if constrained and grammars is not None:
        bitmask = grammars.new_bitmask(len(samplers))
        for i, grammar in constrained.items():
            grammar.fill(bitmask, i)
        grammars.apply(logits, bitmask, list(constrained))
        for i, grammar in constrained.items():
            if remaining[i] <= closing_margin(samplers[i].params.max_tokens or 1):
                tok = grammar.closing_choice(bitmask, i)
                if tok is not None:
                    chosen[i] = tok
    greedy = [i for i, s in enumerate(samplers) if i not in chosen and s.greedy]
    if greedy:
        for i, tok in zip(greedy, logits[greedy].argmax(dim=-1).tolist(), strict=True):
            chosen[i] = tok
    rand = [i for i, s in enumerate(samplers) if i not in chosen]
    if rand:
        temps = torch.tensor([samplers[i].params.temperature for i in rand], dtype=logits.dtype)
        probs = torch.softmax(logits[rand] / temps[:, None], dim=-1)
        for row, i in enumerate(rand):
            top_p = min(max(samplers[i].params.top_p, 0.0), 1.0)
            chosen[i] = _draw(probs[row], top_p, samplers[i].generator)
    out = [chosen[i] for i in range(len(samplers))]
    for s, tok in zip(samplers, out, strict=True):
        s.counts[tok] = s.counts.get(tok, 0) + 1
        if s.grammar is not None:
            s.grammar.accept(tok)
    return out
