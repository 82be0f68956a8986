"""Token ids on disk, and batches drawn from them without loading the corpus in memory.

``write_shard`` streams a split's text through the tokenizer about a megabyte at a time (cut at line
ends) and appends the ids to ``NAME.bin`` (uint16 when the vocabulary fits, else uint32). Training
reads it as a ``numpy.memmap``: a batch touches only the pages of its windows.

``BatchSampler`` draws random windows like nanoGPT's ``get_batch``, but from its own
``torch.Generator`` (whose state is saved in checkpoints: the data position) and with one gather per
batch instead of one slice per row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aifab.training.tokenizer import TextTokenizer


def dtype_for(vocab_size: int) -> type[np.unsignedinteger]:
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def _pieces(path: Path, size: int) -> Iterator[str]:
    """The file's text in pieces of about ``size`` characters, each ending at a line end."""
    with open(path, encoding="utf-8", newline="") as fh:
        rest = ""
        while block := fh.read(size):
            block = rest + block
            cut = block.rfind("\n") + 1
            if cut == 0:
                rest = block
                continue
            rest = block[cut:]
            yield block[:cut]
        if rest:
            yield rest


def write_shard(text_file: Path, tokenizer: TextTokenizer, out: Path, *, piece_chars: int = 1 << 20,
                progress: Callable[[int], None] | None = None) -> int:
    """Tokenize ``text_file`` into ``out`` (written to a temporary name, then renamed); returns tokens."""
    dtype = dtype_for(tokenizer.vocab_size)
    tmp = out.with_name(out.name + ".partial")
    count = 0
    with open(tmp, "wb") as fh:
        for piece in _pieces(text_file, piece_chars):
            ids = tokenizer.encode(piece).astype(dtype)
            ids.tofile(fh)
            count += len(ids)
            if progress:
                progress(len(piece))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    return count


def read_meta(directory: Path) -> dict[str, Any]:
    return dict(json.loads((directory / "shards.json").read_text()))


def open_split(directory: Path, split: str) -> np.memmap:
    meta = read_meta(directory)
    return np.memmap(directory / f"{split}.bin", dtype=np.dtype(meta["dtype"]), mode="r")


class BatchSampler:
    """Random windows of ``block + 1`` tokens; reproducible from ``state()``."""

    def __init__(self, data: np.memmap, block_size: int, batch_size: int, seed: int) -> None:
        self.data = data
        self.block = block_size
        self.batch = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._offsets = np.arange(block_size + 1)
        self.high = len(data) - block_size  # window starts in [0, high)

    def __iter__(self) -> BatchSampler:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(self.high, (self.batch,), generator=self.generator).numpy()
        window = torch.from_numpy(self.data[starts[:, None] + self._offsets].astype(np.int64))
        return window[:, :-1].contiguous(), window[:, 1:].contiguous()

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def restore(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
