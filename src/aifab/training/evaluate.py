"""Validation loss and perplexity, sample generations, and the loss curve of a finished run."""

from __future__ import annotations

import json
import math
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aifab.training.shards import BatchSampler
from aifab.training.tokenizer import TextTokenizer


@torch.no_grad()
def estimate_loss(model: torch.nn.Module, data: np.memmap, *, block_size: int, batch_size: int, batches: int,
                  seed: int, device: torch.device, autocast: AbstractContextManager[Any]) -> float:
    """Mean loss over ``batches`` random windows of ``data``. The windows come from a generator seeded
    with ``seed`` each time, so every validation of a run scores the same text and the training RNG
    is not touched."""
    was_training = model.training
    model.eval()
    sampler = BatchSampler(data, block_size, batch_size, seed)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for _ in range(batches):
        x, y = next(sampler)
        with autocast:
            _, loss = model(x.to(device), y.to(device))
        total += loss.double()
    model.train(was_training)
    return float(total.item()) / batches


@torch.no_grad()
def sample(model: torch.nn.Module, tokenizer: TextTokenizer, prompt: str, tokens: int, *, seed: int,
           device: torch.device) -> str:
    """``tokens`` sampled after ``prompt`` (temperature 0.8, top-k 50), decoded."""
    was_training = model.training
    model.eval()
    ids = tokenizer.encode(prompt).tolist() or [tokenizer.eos_id]
    gen = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(torch.tensor([ids], device=device), tokens, generator=gen)  # type: ignore[operator]
    model.train(was_training)
    return tokenizer.decode(out[0, len(ids):].tolist())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The metric records of a run; a torn last line (a killed writer) is ignored."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def plot_loss(metrics: list[dict[str, Any]], out: Path, title: str) -> Path | None:
    """Training and validation loss against step, as a PNG; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    train = [(m["step"], m["loss"]) for m in metrics if m.get("kind") == "train"]
    val = [(m["step"], m["val_loss"]) for m in metrics if m.get("kind") == "eval"]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if train:
        steps, losses = zip(*train, strict=True)
        window = max(1, len(losses) // 100)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, label="train (smoothed)", linewidth=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation", linewidth=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))
