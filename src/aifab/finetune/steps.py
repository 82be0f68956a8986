"""One optimizer step's forward and backward passes, for SFT (LoRA or full) and for DPO."""

from __future__ import annotations

from typing import Any

import torch

from aifab.finetune.collate import pack
from aifab.finetune.config import FinetuneConfig
from aifab.finetune.loop import StepFn, StepStats
from aifab.finetune.objectives import dpo_loss, reference, sequence_logprobs, target_logprobs
from aifab.finetune.render import Sequence


def sft_step(model: Any, seqs: list[Sequence], cfg: FinetuneConfig) -> StepFn:
    """Mean cross-entropy over the targets of the step's examples (every target weighs the same,
    however the examples are split into micro-batches)."""

    def step(batch: list[int]) -> StepStats:
        chosen = [seqs[i] for i in batch]
        n_targets = sum(len(s.targets) for s in chosen)
        total = 0.0
        tokens = 0
        for mb in pack(chosen, batch_tokens=cfg.batch_tokens, packing=cfg.packing):
            loss = -target_logprobs(model, mb).sum() / n_targets
            loss.backward()
            total += float(loss.detach())
            tokens += mb.tokens
        return StepStats(loss=total, tokens=tokens, targets=n_targets)

    return step


def _groups(pairs: list[tuple[Sequence, Sequence]], budget: int) -> list[list[tuple[Sequence, Sequence]]]:
    """Consecutive pairs whose tokens fit ``budget`` (a pair is never split: its loss needs both)."""
    groups: list[list[tuple[Sequence, Sequence]]] = [[]]
    used = 0
    for pair in pairs:
        n = len(pair[0]) + len(pair[1])
        if groups[-1] and used + n > budget:
            groups.append([])
            used = 0
        groups[-1].append(pair)
        used += n
    return groups


def dpo_step(model: Any, pairs: list[tuple[Sequence, Sequence]], cfg: FinetuneConfig) -> StepFn:
    """Sigmoid DPO, the reference being the base (the adapter disabled). Pairs are packed in groups
    of at most ``batch_tokens``; each group's loss only depends on its own pairs, so each group's
    backward runs before the next group's forward and memory stays bounded."""

    def logprobs(seqs: list[Sequence]) -> torch.Tensor:
        out = torch.zeros(len(seqs))
        for mb in pack(seqs, batch_tokens=cfg.batch_tokens, packing=cfg.packing):
            out = out + sequence_logprobs(model, mb, len(seqs))
        return out

    def step(batch: list[int]) -> StepStats:
        chosen = [pairs[i] for i in batch]
        total, tokens, targets = 0.0, 0, 0
        rewards_c: list[torch.Tensor] = []
        rewards_r: list[torch.Tensor] = []
        for group in _groups(chosen, cfg.batch_tokens):
            seqs = [s for pair in group for s in pair]
            with torch.no_grad(), reference(model):
                ref = logprobs(seqs)
            loss, rewards = dpo_loss(logprobs(seqs), ref, cfg.beta)
            (loss / len(chosen)).backward()
            total += float(loss.detach()) / len(chosen)
            tokens += sum(len(s) for s in seqs)
            targets += sum(len(s.targets) for s in seqs)
            rewards_c.append(rewards["chosen"])
            rewards_r.append(rewards["rejected"])
        rc, rr = torch.cat(rewards_c), torch.cat(rewards_r)
        extra = {"reward_margin": float((rc - rr).mean()), "reward_accuracy": float((rc > rr).float().mean())}
        return StepStats(loss=total, tokens=tokens, targets=targets, extra=extra)

    return step
