"""Checks that fail fast, before long work: context against data, memory against the batch."""

from __future__ import annotations

import torch

from aifab.errors import InvalidRequest
from aifab.training.config import ModelConfig, OptimConfig

GiB = 1024**3


def check_context(block_size: int, counts: dict[str, int], unit: str) -> None:
    """Each split needs at least one window of ``block_size + 1`` tokens (input and shifted target)."""
    for split, n in counts.items():
        if n < block_size + 1:
            raise InvalidRequest(
                f"context longer than the data: the {split} split has {n:,} {unit}, block_size is {block_size} "
                f"(a window needs {block_size + 1}); lower block_size or add text"
            )


def param_count(cfg: ModelConfig) -> int:
    """Parameters of ``Transformer(cfg)``, counted from the config (building the model, even on the meta
    device, would cost a second of imports before the first check)."""
    C, H, V, b = cfg.n_embd, cfg.hidden, cfg.vocab_size, int(cfg.bias)
    norm = C * (2 if cfg.norm == "layernorm" and cfg.bias else 1)
    up = (2 if cfg.mlp == "swiglu" else 1) * H
    layer = 2 * norm + (3 * C * C + 3 * C * b) + (C * C + C * b) + (up * C + up * b) + (H * C + C * b)
    embeddings = V * C * (1 if cfg.tie_embeddings else 2) + (cfg.block_size * C if cfg.positions == "learned" else 0)
    return embeddings + cfg.n_layer * layer + norm


def training_bytes(cfg: ModelConfig, opt: OptimConfig, *, bytes_per_activation: int = 4) -> tuple[int, int]:
    """(parameters + gradients + AdamW moments, activations of one micro-batch), in bytes.

    Activations are counted per layer as the tensors autograd keeps (about 12 x width for the norms,
    projections and residuals, 3 x MLP hidden, and the attention probabilities when SDPA falls back to
    the math kernel), plus the logits and their softmax and gradient. An estimate, meant to catch a
    batch that is clearly too big, not to plan a tight fit."""
    P = param_count(cfg)
    B, T, C, H = opt.batch_size, cfg.block_size, cfg.n_embd, cfg.hidden
    per_layer = B * T * (12 * C + 3 * H * (2 if cfg.mlp == "swiglu" else 1)) + 2 * B * cfg.n_head * T * T
    acts = (cfg.n_layer * per_layer + 3 * B * T * cfg.vocab_size) * bytes_per_activation
    return 16 * P, acts


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def check_memory(cfg: ModelConfig, opt: OptimConfig, device: torch.device) -> dict[str, float]:
    """Refuse a configuration whose estimate does not fit in 90% of the free memory of ``device``."""
    state, acts = training_bytes(cfg, opt)
    free = available_bytes(device)
    need = state + acts
    if need > 0.9 * free:
        raise InvalidRequest(
            f"the batch does not fit in memory: training needs about {need / GiB:.1f} GiB "
            f"(weights, gradients and optimizer {state / GiB:.1f} GiB, activations {acts / GiB:.1f} GiB for "
            f"{opt.batch_size} x {cfg.block_size} tokens) and {device.type} has {free / GiB:.1f} GiB free; "
            "lower batch_size (raise grad_accum to keep the tokens per step) or block_size"
        )
    return {"estimate_gib": need / GiB, "available_gib": free / GiB}
