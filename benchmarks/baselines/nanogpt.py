"""karpathy/nanoGPT's model and training loop, reproduced for the CPU "baby GPT" comparison.

The model is nanoGPT's ``model.py`` (``GPT``, ``Block``, ``CausalSelfAttention`` with SDPA, ``MLP`` with
GELU, ``LayerNorm`` with optional bias, tied embeddings, the 0.02 / scaled residual init,
``configure_optimizers`` with decayed 2-D parameters). The loop is ``train.py``'s: ``get_batch``
(``torch.randint`` window starts on a uint16 memmap, one ``torch.stack`` per batch), ``get_lr`` (linear
warm-up, cosine decay to ``min_lr``), ``estimate_loss`` (``eval_iters`` random batches per split, on the
global RNG), clip at 1.0, ``zero_grad(set_to_none=True)``, and the same order of operations: evaluate at
``iter % eval_interval == 0``, forward, fetch the next batch, backward, clip, step.

Left out because they do nothing on a CPU run: DDP, the GradScaler (disabled for float32), autocast
(``nullcontext`` on CPU), MFU estimation, wandb, checkpoint writing. Timing wraps only the training
iterations (not evaluation), as nanoGPT's per-iteration ``dt`` does.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F


class LayerNorm(nn.Module):
    """LayerNorm but with an optional bias. PyTorch doesn't support simply bias=False"""

    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=None, dropout_p=self.dropout if self.training else 0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        y = self.resid_dropout(self.c_proj(y))
        return y


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):  # type: ignore[no-untyped-def]
        device = idx.device
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=device)
        tok_emb = self.transformer.wte(idx)
        pos_emb = self.transformer.wpe(pos)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        else:
            logits = self.lm_head(x[:, [-1], :])
            loss = None
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):  # type: ignore[no-untyped-def]
        param_dict = {pn: p for pn, p in self.named_parameters() if p.requires_grad}
        decay_params = [p for n, p in param_dict.items() if p.dim() >= 2]
        nodecay_params = [p for n, p in param_dict.items() if p.dim() < 2]
        optim_groups = [
            {"params": decay_params, "weight_decay": weight_decay},
            {"params": nodecay_params, "weight_decay": 0.0},
        ]
        fused_available = "fused" in inspect.signature(torch.optim.AdamW).parameters
        use_fused = fused_available and device_type == "cuda"
        extra_args = dict(fused=True) if use_fused else dict()
        return torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas, **extra_args)


@dataclass
class BabyGPT:
    """``config/train_shakespeare_char.py`` with the README's CPU overrides."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    batch_size: int = 12
    max_iters: int = 2000
    lr_decay_iters: int = 2000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    dropout: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.99
    weight_decay: float = 1e-1
    grad_clip: float = 1.0
    bias: bool = False
    eval_interval: int = 1000
    eval_iters: int = 200
    seed: int = 1337


class Run:
    """nanoGPT's train.py loop on ``data_dir/{train,val}.bin`` (uint16), advanced in blocks so that it can
    be interleaved with another run in the same process. It owns the global torch RNG stream it would
    have alone: ``advance`` swaps its state in and out. Training time excludes evaluation."""

    def __init__(self, data_dir: Path, vocab_size: int, cfg: BabyGPT, *, log=print) -> None:  # type: ignore[no-untyped-def]
        outer = torch.get_rng_state()
        torch.manual_seed(cfg.seed)
        self.cfg, self.data_dir, self.log = cfg, data_dir, log
        self.model = GPT(GPTConfig(block_size=cfg.block_size, vocab_size=vocab_size, n_layer=cfg.n_layer,
                                   n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout, bias=cfg.bias))
        self.optimizer = self.model.configure_optimizers(cfg.weight_decay, cfg.learning_rate,
                                                         (cfg.beta1, cfg.beta2), "cpu")
        self.X, self.Y = self.get_batch("train")
        self.iter_num = 0
        self.val_loss: dict[int, float] = {}
        self.train_seconds = 0.0
        self._rng = torch.get_rng_state()
        torch.set_rng_state(outer)

    def get_batch(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        # nanoGPT recreates the memmap every batch to avoid a memory leak
        data = np.memmap(self.data_dir / f"{split}.bin", dtype=np.uint16, mode="r")
        ix = torch.randint(len(data) - cfg.block_size, (cfg.batch_size,))
        x = torch.stack([torch.from_numpy((data[i:i + cfg.block_size]).astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy((data[i + 1:i + 1 + cfg.block_size]).astype(np.int64)) for i in ix])
        return x, y

    @torch.no_grad()
    def estimate_loss(self) -> dict[str, float]:
        out = {}
        self.model.eval()
        for split in ["train", "val"]:
            losses = torch.zeros(self.cfg.eval_iters)
            for k in range(self.cfg.eval_iters):
                X, Y = self.get_batch(split)
                _, loss = self.model(X, Y)
                losses[k] = loss.item()
            out[split] = float(losses.mean())
        self.model.train()
        return out

    def get_lr(self, it: int) -> float:
        cfg = self.cfg
        if it < cfg.warmup_iters:
            return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
        if it > cfg.lr_decay_iters:
            return cfg.min_lr
        decay_ratio = (it - cfg.warmup_iters) / (cfg.lr_decay_iters - cfg.warmup_iters)
        coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
        return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)

    @property
    def done(self) -> bool:
        return self.cfg.max_iters in self.val_loss

    def advance(self, n: int) -> None:
        """Run ``n`` more iterations (fewer at the end), evaluating where nanoGPT does."""
        outer = torch.get_rng_state()
        torch.set_rng_state(self._rng)
        cfg, model, optimizer = self.cfg, self.model, self.optimizer
        stop = min(self.iter_num + n, cfg.max_iters)
        t0 = time.perf_counter()
        while True:
            lr = self.get_lr(self.iter_num)
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            if (self.iter_num % cfg.eval_interval == 0 or self.iter_num == cfg.max_iters) \
                    and self.iter_num not in self.val_loss:
                self.train_seconds += time.perf_counter() - t0
                losses = self.estimate_loss()
                self.val_loss[self.iter_num] = losses["val"]
                self.log(f"nanoGPT step {self.iter_num}: train loss {losses['train']:.4f}, "
                         f"val loss {losses['val']:.4f}")
                t0 = time.perf_counter()
            if self.iter_num >= stop:
                break
            _, loss = model(self.X, self.Y)
            self.X, self.Y = self.get_batch("train")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            self.iter_num += 1
        self.train_seconds += time.perf_counter() - t0
        self._rng = torch.get_rng_state()
        torch.set_rng_state(outer)


def train(data_dir: Path, vocab_size: int, cfg: BabyGPT, *, log=print) -> dict:  # type: ignore[no-untyped-def]
    """The whole run at once. Returns val losses by iteration and the training time."""
    run = Run(data_dir, vocab_size, cfg, log=log)
    run.advance(cfg.max_iters)
    return {"val_loss": run.val_loss, "train_seconds": run.train_seconds, "iters": cfg.max_iters,
            "tokens": cfg.max_iters * cfg.batch_size * cfg.block_size}
