"""Micro-batches without padding: sequences concatenated into one row, attention kept inside each.

Each optimizer step takes ``batch_size`` examples (the same examples a padding collator would
batch, so the optimisation is the same). They are concatenated, in order, into rows of at most
``batch_tokens`` tokens, one row per forward; each sequence keeps its own position ids (0, 1, ...)
and its attention runs on its own slice (``attention.py``), so a packed sequence computes what it
would alone (tested to 1e-4). There is no padding token anywhere. ``packing=False`` runs one
sequence per forward instead (the same result, smaller matrices).

The logits are computed at the target positions only: a classification answer is 2 tokens of a
300-token example, and the vocabulary projection of the other 298 (49k columns each) would be most
of the memory and, measured, most of the time of a step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aifab.finetune.render import Sequence


@dataclass
class MicroBatch:
    """One forward pass: one row of concatenated sequences, and where their targets are."""

    input_ids: torch.Tensor  # [1, T]
    position_ids: torch.Tensor  # [1, T]
    segments: list[tuple[int, int]]  # [start, end) of each sequence in the row
    cols: torch.Tensor  # [N] column whose logits predict each target
    labels: torch.Tensor  # [N] target token ids
    seq: torch.Tensor  # [N] index (in the list given to ``pack``) of each target's sequence

    @property
    def n_targets(self) -> int:
        return int(self.labels.numel())

    @property
    def tokens(self) -> int:
        return int(self.input_ids.shape[1])


def pack(seqs: list[Sequence], *, batch_tokens: int, packing: bool = True) -> list[MicroBatch]:
    """Micro-batches covering ``seqs`` in order; a row holds at most ``batch_tokens`` tokens (a longer
    sequence gets a row of its own)."""
    batches: list[MicroBatch] = []
    group: list[int] = []
    used = 0
    for i, s in enumerate(seqs):
        if group and (not packing or used + len(s) > batch_tokens):
            batches.append(_build(seqs, group))
            group, used = [], 0
        group.append(i)
        used += len(s)
    if group:
        batches.append(_build(seqs, group))
    return batches


def _build(seqs: list[Sequence], group: list[int]) -> MicroBatch:
    ids: list[int] = []
    pos: list[int] = []
    segments: list[tuple[int, int]] = []
    cols: list[int] = []
    labels: list[int] = []
    owner: list[int] = []
    for i in group:
        s, offset = seqs[i], len(ids)
        ids += s.ids
        pos += range(len(s))
        segments.append((offset, offset + len(s)))
        cols += [offset + p - 1 for p in s.targets]
        labels += [s.ids[p] for p in s.targets]
        owner += [i] * len(s.targets)
    return MicroBatch(
        input_ids=torch.tensor([ids], dtype=torch.long), position_ids=torch.tensor([pos], dtype=torch.long),
        segments=segments, cols=torch.tensor(cols, dtype=torch.long), labels=torch.tensor(labels, dtype=torch.long),
        seq=torch.tensor(owner, dtype=torch.long),
    )
