"""``finetune()``: a base model package + a dataset -> an evaluated, registered model package.

Steps: convert the base if it is GGUF (once) -> load it -> render the dataset with its chat template
-> add LoRA (or train every weight) -> the loop (checkpoints, resume) -> evaluate on the eval split
-> write the package -> register it. ``OUT/train/`` keeps the run's metrics and its checkpoint (the
checkpoint is deleted once the package is written: it is only needed to resume).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from aifab.errors import InvalidRequest
from aifab.finetune.attention import use_packed_attention
from aifab.finetune.config import FinetuneConfig
from aifab.finetune.data import Dataset, load_dataset_dir
from aifab.finetune.evaluation import evaluate_model
from aifab.finetune.gate import gate
from aifab.finetune.loop import Loop, LoopResult, Progress, plan_steps
from aifab.finetune.model import add_lora, load_base, safetensors_base
from aifab.finetune.package import write_package
from aifab.finetune.render import ChatRenderer, Sequence
from aifab.finetune.steps import dpo_step, sft_step
from aifab.registry import ModelPackage
from aifab.training.loop import seed_everything

Report = Callable[[str], None]


@dataclass
class FinetuneResult:
    """What a run produced. ``package`` is None when it was interrupted (run it again to resume)."""

    name: str
    method: str
    out_dir: str
    steps: int
    train_loss: float
    train_seconds: float
    tokens: int
    tokens_per_s: float
    eval: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)  # the evaluation gate's verdict against the base
    package: ModelPackage | None = None
    interrupted: bool = False
    resumed_from: int = 0
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["package"] = self.package.to_dict() if self.package else None
        return out


def fingerprint(base: ModelPackage, dataset: Dataset, cfg: FinetuneConfig) -> str:
    key = {"base": base.sha256 or base.path, "dataset": dataset.sha256, "config": cfg.hyperparameters()}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_kind(dataset: Dataset, cfg: FinetuneConfig) -> None:
    want = "preference" if cfg.method == "dpo" else "sft"
    if dataset.kind != want:
        raise InvalidRequest(f"method {cfg.method} needs a {want} dataset; '{dataset.name}' is {dataset.kind}"
                             + (" (use --method dpo)" if dataset.kind == "preference" else ""), param="method")


def _render(renderer: ChatRenderer, dataset: Dataset, cfg: FinetuneConfig) -> tuple[list[Any], dict[str, Any]]:
    items: list[Any] = []
    for ex in dataset.train:
        item = renderer.pair(ex) if cfg.method == "dpo" else renderer.sft(ex)
        if item is not None:
            items.append(item)
    if not items:
        raise InvalidRequest(f"no training example fits max_length {cfg.max_length} with an answer left to learn",
                             param="max_length")
    seqs: list[Sequence] = [s for it in items for s in (it if isinstance(it, tuple) else (it,))]
    info = {"train_examples": len(items), "train_tokens": sum(len(s) for s in seqs),
            "train_targets": sum(len(s.targets) for s in seqs), "truncated": renderer.stats.truncated,
            "dropped": renderer.stats.dropped, "eval_examples": len(dataset.eval)}
    return items, info


def finetune(base: ModelPackage, dataset: Dataset | Path | str, config: FinetuneConfig, out_dir: Path, *,
             name: str | None = None, registry: Any = None, resume: bool = True,
             progress: Progress | None = None, report: Report = lambda _m: None) -> FinetuneResult:
    """Fine-tune ``base`` on ``dataset`` (a :class:`Dataset`, a version directory or a JSONL file).

    The package is written to ``out_dir`` and, with a ``registry``, registered as ``name`` (default
    ``BASE-DATASET-METHOD``), replacing nothing: a taken name is refused before any work. With
    ``resume`` a checkpoint of the same run in ``out_dir/train`` is continued; a checkpoint of a
    different run (other base, data or settings) is an error, and ``resume=False`` starts over."""
    cfg = config
    data = dataset if isinstance(dataset, Dataset) else load_dataset_dir(dataset)
    _check_kind(data, cfg)
    name = name or f"{base.name}-{data.name}-{cfg.method}"
    if registry is not None and name in {p.name for p in registry.list()}:
        from aifab.errors import Conflict

        raise Conflict(f"model '{name}' already exists; remove it first or pick another --name")
    out_dir = Path(out_dir)
    root = out_dir / "train"
    if not resume:
        shutil.rmtree(root, ignore_errors=True)
    if base.format == "gguf":
        report(f"converting {base.name} to safetensors (once; reused by later runs)")
    base_st = safetensors_base(base, registry=registry, cache_dir=out_dir.parent / ".bases")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    model, tokenizer = load_base(base_st.path)
    renderer = ChatRenderer(tokenizer, base_st.chat_template, base_st.special_tokens, max_length=cfg.max_length)
    items, info = _render(renderer, data, cfg)
    report(f"data: {info['train_examples']} training examples, {info['train_tokens']:,} tokens "
           f"({info['train_targets']:,} trained), {info['eval_examples']} eval"
           + (f"; {info['truncated']} truncated to {cfg.max_length} tokens" if info["truncated"] else "")
           + (f", {info['dropped']} dropped (no answer left)" if info["dropped"] else ""))
    before: dict[str, Any] | None = None
    if cfg.gate_margin is not None:  # the base, on the same held-out examples, before any training
        report(f"evaluating {base.name} on the eval split (the gate's reference)")
        before = evaluate_model(model, tokenizer, renderer, data.eval, generate=cfg.eval_generate,
                                max_new_tokens=cfg.eval_max_new_tokens, batch_tokens=cfg.batch_tokens)
    if cfg.uses_lora:
        model = add_lora(model, cfg)
    use_packed_attention(model)
    step_fn = dpo_step(model, items, cfg) if cfg.method == "dpo" else sft_step(model, items, cfg)
    loop = Loop(model, plan_steps(len(items), cfg), step_fn, cfg, root, fingerprint(base_st, data, cfg),
                progress=progress)
    if resume and loop.resume():
        report(f"resuming at step {loop.step} of {len(loop.plan)} from {loop.last_path}")
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report(f"training: {cfg.method}, {trained / 1e6:.2f} M trained parameters, {len(loop.plan)} steps")
    outcome = loop.run()
    result = _result(name, cfg, out_dir, outcome, info)
    if outcome.interrupted:
        report(f"interrupted at step {outcome.steps}: checkpoint saved; run the same command to resume")
        return result
    report("evaluating on the eval split")
    result.eval = evaluate_model(model, tokenizer, renderer, data.eval, generate=cfg.eval_generate,
                                 max_new_tokens=cfg.eval_max_new_tokens, batch_tokens=cfg.batch_tokens)
    if outcome.last:
        result.eval.update({f"train_{k}": v for k, v in outcome.last.items()})
    if before is not None and cfg.gate_margin is not None:
        result.gate = gate(result.eval, before, margin=cfg.gate_margin, current_name=base.name)
        report(f"gate: {'passed' if result.gate['passed'] else 'not passed'}: {result.gate['reason']}")
    lineage = _lineage(base, base_st, data, cfg, result, root)
    pkg = write_package(model, tokenizer, base_st, out_dir, name=name, lora=cfg.uses_lora, lineage=lineage)
    (root / "summary.json").write_text(json.dumps(result.to_dict() | {"package": pkg.to_dict()}, indent=2,
                                                  default=str))
    (root / "last.pt").unlink(missing_ok=True)  # only needed to resume; a full fine-tune's is ~1.6 GB
    if registry is not None:
        registry.add(pkg)
    result.package = pkg
    return result


def _result(name: str, cfg: FinetuneConfig, out_dir: Path, outcome: LoopResult, info: dict[str, Any]) -> FinetuneResult:
    return FinetuneResult(name=name, method=cfg.method, out_dir=str(out_dir.resolve()), steps=outcome.steps,
                          train_loss=outcome.final_loss(), train_seconds=outcome.train_seconds,
                          tokens=outcome.tokens, tokens_per_s=outcome.tokens_per_s,
                          interrupted=outcome.interrupted, resumed_from=outcome.resumed_from, data=info)


def _lineage(base: ModelPackage, base_st: ModelPackage, data: Dataset, cfg: FinetuneConfig, result: FinetuneResult,
             root: Path) -> dict[str, Any]:
    metrics = {"train_loss": result.train_loss, "eval_loss": result.eval.get("loss", math.nan),
               "steps": result.steps, "tokens": result.tokens, "tokens_per_s": round(result.tokens_per_s, 1),
               "train_seconds": round(result.train_seconds, 1)}
    metrics.update({k: v for k, v in result.eval.items()
                    if k in ("exact_match", "preference_accuracy", "logprob_margin", "answered")
                    or k.startswith("train_")})
    return {
        "finetuned_by": "aifab finetune", "base": base.name, "base_sha256": base.sha256,
        "base_safetensors": {"name": base_st.name, "path": base_st.path, "sha256": base_st.sha256},
        "dataset": data.lineage(), "method": cfg.method, "hyperparameters": cfg.hyperparameters(),
        "metrics": metrics, "data": result.data, "run_dir": str(root.resolve()), "gate": result.gate or None,
    }
