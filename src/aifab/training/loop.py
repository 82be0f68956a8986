"""The training loop: optimisation, validation, checkpoints, resume, interruption.

One iteration at step ``s``: validate if due (before training, as nanoGPT does), checkpoint if due,
stop if asked (Ctrl-C / SIGTERM set a flag; the loop saves at this clean point and exits), then one
optimizer step of ``grad_accum`` micro-batches. Per-step losses stay on the device and are written to
``metrics.jsonl`` in one transfer per ``log_every`` steps, so the loop never waits on the host.

Resume loads the last checkpoint and drops metric records written after it, so the metrics of an
interrupted and resumed run are those of an uninterrupted one; on a CPU with the same seed the losses
are bit-identical (the samplers, every RNG and the optimizer state are restored).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aifab.errors import ConfigError
from aifab.training import checkpoint as ckpt
from aifab.training.config import TrainSpec
from aifab.training.distributed import Dist
from aifab.training.evaluate import estimate_loss, perplexity, plot_loss, read_metrics, sample
from aifab.training.model import ModelConfig, Transformer
from aifab.training.optim import lr_at, make_optimizer
from aifab.training.shards import BatchSampler, open_split
from aifab.training.tokenizer import TextTokenizer

Report = Callable[[str], None]


@dataclass
class RunFiles:
    """Where a run keeps its training state (``run_dir/train``)."""

    root: Path

    @property
    def last(self) -> Path:
        return self.root / ckpt.LAST

    @property
    def best(self) -> Path:
        return self.root / ckpt.BEST

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def curve(self) -> Path:
        return self.root / "loss.png"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"


@dataclass
class Outcome:
    step: int
    best_val_loss: float
    best_step: int
    last_val_loss: float
    stopped_early: bool = False
    interrupted: bool = False
    train_seconds: float = 0.0
    tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class StopFlag:
    """SIGINT/SIGTERM ask the loop to stop at the next clean point (main thread only)."""

    def __init__(self) -> None:
        self.set = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.set:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast where it pays: a CUDA GPU with bf16 (``auto``), or when asked for."""
    want = precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    if not want:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Trains one model on the run's shards; rank 0 writes everything."""

    def __init__(self, spec: TrainSpec, model_cfg: ModelConfig, shards: Path, files: RunFiles,
                 tokenizer: TextTokenizer, fingerprint: str, *, device: torch.device, dist: Dist,
                 report: Report = lambda _m: None, progress: Callable[[int, int], None] | None = None,
                 hook: Callable[[int], None] | None = None) -> None:
        self.spec, self.cfg, self.mcfg = spec, spec.train, model_cfg
        self.files, self.tokenizer, self.fingerprint = files, tokenizer, fingerprint
        self.device, self.dist, self.report, self.progress, self.hook = device, dist, report, progress, hook
        self.train_data = open_split(shards, "train")
        self.val_data = open_split(shards, "val")
        seed_everything(self.cfg.seed)
        self.model = Transformer(model_cfg).to(device)
        self.optimizer = make_optimizer(self.model, self.cfg, device.type)
        self.sampler = BatchSampler(self.train_data, model_cfg.block_size, self.cfg.batch_size,
                                    self.cfg.seed + 7919 * dist.rank)
        self.autocast = autocast_for(device, self.cfg.precision)
        self.step = 0
        self.best = (math.inf, -1)
        self.bad_evals = 0
        self.last_val = math.nan
        self.last_eval_step = -1
        self.train_seconds = 0.0
        self.pending: list[torch.Tensor] = []  # per-step losses not yet written

    # --- state --------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        samplers, rngs = self._gather((self.sampler.state(), ckpt.rng_state()))
        return {
            "fingerprint": self.fingerprint, "step": self.step, "model": ckpt.unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(), "samplers": samplers, "rng": rngs,
            "best": self.best, "bad_evals": self.bad_evals, "last_val": self.last_val,
            "last_eval_step": self.last_eval_step, "train_seconds": self.train_seconds,
            "model_config": self.mcfg.to_dict(), "spec": self.spec.to_dict(),
        }

    def _gather(self, local: tuple[Any, Any]) -> tuple[list[Any], list[Any]]:
        if not self.dist.enabled:
            return [local[0]], [local[1]]
        everyone: list[Any] = [None] * self.dist.world
        torch.distributed.all_gather_object(everyone, local)
        return [e[0] for e in everyone], [e[1] for e in everyone]

    def save(self) -> None:
        state = self._state()  # a collective under DDP: every rank takes part
        if self.dist.main:
            ckpt.atomic_save(state, self.files.last)

    def resume(self) -> bool:
        """Continue from the last checkpoint if there is one; False when starting fresh."""
        state = ckpt.load(self.files.last)
        if state is None:
            return False
        if state["fingerprint"] != self.fingerprint:
            raise ConfigError(
                f"{self.files.root} holds a run with other data, tokenizer, model or optimizer settings; "
                "use another --name, or --restart to start this one over"
            )
        ckpt.unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        rank = self.dist.rank if len(state["samplers"]) == self.dist.world else 0
        self.sampler.restore(state["samplers"][rank])
        ckpt.restore_rng(state["rng"][rank])
        self.step, self.best, self.bad_evals = state["step"], tuple(state["best"]), state["bad_evals"]
        self.last_val, self.last_eval_step = state["last_val"], state["last_eval_step"]
        self.train_seconds = state["train_seconds"]
        if self.dist.main:
            kept = [m for m in read_metrics(self.files.metrics)
                    if m["step"] < self.step or (m["kind"] != "train" and m["step"] <= self.step)]
            tmp = self.files.metrics.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(m) + "\n" for m in kept))
            tmp.replace(self.files.metrics)
        return True

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> Outcome:
        model: Any = self.model
        if self._compile():
            model = torch.compile(model)
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.files.root.mkdir(parents=True, exist_ok=True)
        metrics = open(self.files.metrics, "a") if self.dist.main else None
        interrupted = stopped = False
        try:
            with StopFlag() as stop:
                stopped, interrupted = self._loop(model, metrics, stop)
        finally:
            if metrics:
                metrics.close()
        return self._finish(stopped, interrupted)

    def _loop(self, model: Any, metrics: Any, stop: StopFlag) -> tuple[bool, bool]:
        cfg, start = self.cfg, self.step
        t0 = time.perf_counter()
        while self.step < cfg.steps:
            if self.step % cfg.eval_every == 0 and self.last_eval_step != self.step:
                self.train_seconds += time.perf_counter() - t0
                improved = self._validate(metrics)
                if not improved and cfg.patience and self.bad_evals >= cfg.patience:
                    self._flush(metrics)
                    self.save()
                    return True, False
                t0 = time.perf_counter()
            if self.step != start and self.step % cfg.checkpoint_every == 0:
                self.train_seconds += time.perf_counter() - t0
                self.save()
                t0 = time.perf_counter()
            if self._should_stop(stop):
                self.train_seconds += time.perf_counter() - t0
                self._flush(metrics)  # every step's loss is in the metrics before the checkpoint
                self.save()
                return False, True
            self.pending.append(self._train_step(model, lr_at(self.step, cfg)))
            self.step += 1
            if self.step % cfg.log_every == 0 or self.step == cfg.steps or self.step % cfg.checkpoint_every == 0:
                self.train_seconds += time.perf_counter() - t0
                self._flush(metrics)
                if self.hook:
                    self.hook(self.step)
                t0 = time.perf_counter()
        self.train_seconds += time.perf_counter() - t0
        if self.last_eval_step != self.step:
            self._validate(metrics)
        self.save()
        return False, False

    def _should_stop(self, stop: StopFlag) -> bool:
        """Under DDP every rank must stop at the same step (a checkpoint is a collective)."""
        if not self.dist.enabled:
            return stop.set
        flag = torch.tensor([float(stop.set)], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def _train_step(self, model: Any, lr: float) -> torch.Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        accum = self.cfg.grad_accum
        total = torch.zeros((), device=self.device)
        for micro in range(accum):
            x, y = next(self.sampler)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            sync = contextlib.nullcontext() if micro == accum - 1 or not self.dist.enabled else model.no_sync()
            with sync:
                with self.autocast:
                    _, loss = model(x, y)
                (loss / accum).backward()
            total += loss.detach().float()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip, foreach=True)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / accum

    def _flush(self, metrics: Any) -> None:
        """Write the per-step losses since the last flush: one device-to-host transfer."""
        if not self.pending:
            return
        losses = torch.stack(self.pending)
        self.pending = []
        if self.dist.enabled:
            torch.distributed.all_reduce(losses)
            losses /= self.dist.world
        values = losses.tolist()
        first = self.step - len(values)
        tokens = self.cfg.batch_size * self.cfg.grad_accum * self.mcfg.block_size * self.dist.world
        if metrics:
            for i, loss in enumerate(values):
                metrics.write(json.dumps({"kind": "train", "step": first + i, "loss": loss,
                                          "lr": lr_at(first + i, self.cfg), "tokens": (first + i + 1) * tokens}) + "\n")
            metrics.flush()
        if self.progress:
            self.progress(self.step, self.cfg.steps)

    def _validate(self, metrics: Any) -> bool:
        loss = estimate_loss(ckpt.unwrap(self.model), self.val_data, block_size=self.mcfg.block_size,
                             batch_size=self.cfg.batch_size, batches=self.cfg.eval_batches, seed=self.cfg.seed + 1,
                             device=self.device, autocast=self.autocast)
        self.last_val, self.last_eval_step = loss, self.step
        improved = loss < self.best[0]
        if improved:
            self.best, self.bad_evals = (loss, self.step), 0
            if self.dist.main:
                ckpt.atomic_save({"model": ckpt.unwrap(self.model).state_dict(), "step": self.step,
                                  "val_loss": loss, "model_config": self.mcfg.to_dict()}, self.files.best)
        else:
            self.bad_evals += 1
        if not self.dist.main:
            return improved
        record = {"kind": "eval", "step": self.step, "val_loss": loss, "val_ppl": perplexity(loss),
                  "best_val_loss": self.best[0], "train_seconds": round(self.train_seconds, 3)}
        text = ""
        if self.cfg.sample_tokens:
            text = sample(ckpt.unwrap(self.model), self.tokenizer, self.cfg.sample_prompt, self.cfg.sample_tokens,
                          seed=self.cfg.seed + self.step, device=self.device)
            record["sample"] = text
        metrics.write(json.dumps(record) + "\n")
        metrics.flush()
        self.report(f"step {self.step}: val loss {loss:.4f} (ppl {perplexity(loss):.2f})"
                    + (" *best*" if improved else ""))
        if text:
            self.report("  sample: " + repr(text[:160]))
        return improved

    def _compile(self) -> bool:
        mode = self.cfg.compile
        return mode == "on" or (mode == "auto" and self.device.type == "cuda")

    def _finish(self, stopped: bool, interrupted: bool) -> Outcome:
        tokens = self.step * self.cfg.batch_size * self.cfg.grad_accum * self.mcfg.block_size * self.dist.world
        out = Outcome(step=self.step, best_val_loss=self.best[0], best_step=self.best[1],
                      last_val_loss=self.last_val, stopped_early=stopped, interrupted=interrupted,
                      train_seconds=self.train_seconds, tokens=tokens)
        if self.dist.main and not interrupted:
            plot = plot_loss(read_metrics(self.files.metrics), self.files.curve, f"{self.spec.run.name}")
            out.extra["loss_curve"] = str(plot) if plot else None
            self.files.summary.write_text(json.dumps(out.__dict__, indent=2))
        return out
