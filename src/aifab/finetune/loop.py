"""The fine-tuning loop: steps over a fixed plan, atomic checkpoints, exact resume, progress.

The plan (which examples make each step) is a pure function of the seed, so the data position is
just the step number. A checkpoint holds the trained parameters (the LoRA matrices, or every weight
in a full fine-tune), the optimizer state, every random state (LoRA dropout draws from torch's), the
step and the clock; it is written with ``aifab.training.checkpoint.atomic_save``, so a ``kill -9``
leaves the previous checkpoint or the new one. Resuming restores all of it and drops the metric
lines written after the checkpoint: on a CPU the resumed run's losses are bit-identical to an
uninterrupted run's. The learning rate is a function of the step (``config.lr_at``), so there is no
scheduler state to keep. Ctrl-C or SIGTERM stops at the next step boundary with a checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aifab.errors import ConfigError
from aifab.finetune.config import FinetuneConfig, lr_at
from aifab.finetune.model import load_trainable, trainable_state
from aifab.training import checkpoint as ckpt
from aifab.training.loop import StopFlag


@dataclass
class StepStats:
    """What one optimizer step did (``loss`` is the step's mean over its targets or pairs)."""

    loss: float
    tokens: int  # real tokens through the model (DPO: the policy's forward)
    targets: int
    extra: dict[str, float] = field(default_factory=dict)


StepFn = Callable[[list[int]], StepStats]  # runs forward + backward for the step's example indices


@dataclass
class ProgressInfo:
    step: int
    steps: int
    loss: float
    tokens_per_s: float
    eta_s: float
    elapsed_s: float


Progress = Callable[[ProgressInfo], None]


@dataclass
class LoopResult:
    steps: int
    losses: list[float]
    tokens: int
    train_seconds: float
    interrupted: bool = False
    resumed_from: int = 0
    last: dict[str, float] = field(default_factory=dict)  # the last step's extra metrics

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.train_seconds if self.train_seconds else 0.0

    def final_loss(self, window: int = 10) -> float:
        tail = self.losses[-window:]
        return sum(tail) / len(tail) if tail else math.nan


def plan_steps(n: int, cfg: FinetuneConfig) -> list[list[int]]:
    """Example indices per optimizer step: each epoch a seeded shuffle cut into ``batch_size`` (the
    last batch may be short); with ``max_steps`` the epochs repeat until that many steps."""
    steps: list[list[int]] = []
    epoch = 0
    while True:
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        order = torch.randperm(n, generator=g).tolist()
        steps += [order[i: i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
        epoch += 1
        if cfg.max_steps > 0 and len(steps) >= cfg.max_steps:
            return steps[: cfg.max_steps]
        if cfg.max_steps <= 0 and epoch >= cfg.epochs:
            return steps


def make_optimizer(model: Any, cfg: FinetuneConfig) -> torch.optim.Optimizer:
    """AdamW with transformers' ``Trainer`` defaults; no decay on norms and biases (1-d tensors)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate, betas=(0.9, 0.999),
                             eps=1e-8)


class Loop:
    """Runs ``plan`` with ``step_fn``; keeps ``root/last.pt`` and ``root/metrics.jsonl``."""

    def __init__(self, model: Any, plan: list[list[int]], step_fn: StepFn, cfg: FinetuneConfig, root: Path,
                 fingerprint: str, *, progress: Progress | None = None) -> None:
        self.model, self.plan, self.step_fn, self.cfg = model, plan, step_fn, cfg
        self.root, self.fingerprint, self.progress = root, fingerprint, progress
        self.optimizer = make_optimizer(model, cfg)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.step = 0
        self.losses: list[float] = []
        self.tokens = 0
        self.train_seconds = 0.0
        self.resumed_from = 0

    @property
    def last_path(self) -> Path:
        return self.root / ckpt.LAST

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    def save(self) -> None:
        ckpt.atomic_save({
            "fingerprint": self.fingerprint, "step": self.step, "trainable": trainable_state(self.model),
            "optimizer": self.optimizer.state_dict(), "rng": ckpt.rng_state(), "losses": self.losses,
            "tokens": self.tokens, "train_seconds": self.train_seconds,
        }, self.last_path)

    def resume(self) -> bool:
        """Continue from ``last.pt`` if there is one; False when starting fresh."""
        state = ckpt.load(self.last_path)
        if state is None:
            return False
        if state["fingerprint"] != self.fingerprint:
            raise ConfigError(f"{self.root} holds a fine-tuning run of another base, dataset or settings; "
                              "use another --name, or --no-resume to start this one over")
        load_trainable(self.model, state["trainable"])
        self.optimizer.load_state_dict(state["optimizer"])
        ckpt.restore_rng(state["rng"])
        self.step, self.losses = state["step"], list(state["losses"])
        self.tokens, self.train_seconds = state["tokens"], state["train_seconds"]
        self.resumed_from = self.step
        if self.metrics_path.is_file():
            kept = [line for line in self.metrics_path.read_text().splitlines()
                    if line and json.loads(line)["step"] < self.step]
            tmp = self.metrics_path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            tmp.replace(self.metrics_path)
        return True

    def run(self) -> LoopResult:
        self.root.mkdir(parents=True, exist_ok=True)
        total = len(self.plan)
        interrupted = False
        last: dict[str, float] = {}
        self.model.train()
        # line-buffered: each step's line is on disk at once, where a job runner reads the loss as it trains
        with StopFlag() as stop, open(self.metrics_path, "a", buffering=1) as metrics:
            while self.step < total:
                if stop.set:
                    interrupted = True
                    break
                t0 = time.perf_counter()
                stats = self._one_step(self.plan[self.step], lr_at(self.step, total, self.cfg))
                self.train_seconds += time.perf_counter() - t0
                self.losses.append(stats.loss)
                self.tokens += stats.tokens
                last = stats.extra
                metrics.write(json.dumps({"step": self.step, "loss": stats.loss, "lr": lr_at(self.step, total, self.cfg),
                                          "tokens": stats.tokens, "targets": stats.targets, **stats.extra}) + "\n")
                self.step += 1
                if self.step % self.cfg.checkpoint_every == 0 or self.step == total:
                    metrics.flush()  # every step's line is on disk before the checkpoint that covers it
                    self.save()
                self._report(total)
        if interrupted:
            self.save()
        return LoopResult(steps=self.step, losses=self.losses, tokens=self.tokens, train_seconds=self.train_seconds,
                          interrupted=interrupted, resumed_from=self.resumed_from, last=last)

    def _one_step(self, batch: list[int], lr: float) -> StepStats:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        stats = self.step_fn(batch)
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return stats

    def _report(self, total: int) -> None:
        if self.progress is None:
            return
        done = self.step - self.resumed_from
        rate = self.tokens / self.train_seconds if self.train_seconds else 0.0
        per_step = self.train_seconds / max(1, self.step)  # resumed runs carry their clock
        recent = self.losses[-10:]
        self.progress(ProgressInfo(step=self.step, steps=total, loss=sum(recent) / len(recent), tokens_per_s=rate,
                                   eta_s=per_step * (total - self.step) if done else math.nan,
                                   elapsed_s=self.train_seconds))
