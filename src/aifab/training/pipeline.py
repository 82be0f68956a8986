"""``aifab train`` end to end: data -> tokenizer -> shards -> training -> package, each stage resumable.

A run lives in one directory (``<data_dir>/runs/NAME``): ``data/``, ``tokenizer/``, ``shards/`` and
``train/``, each stage's folder stamped with the key of its inputs (``stamp.json``, written last). The
same command again skips every stage whose key is unchanged and continues training from the last
checkpoint; a changed input redoes that stage and those after it. Checks that can fail (files,
settings, context, memory) run before the long work of each stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from aifab.training import data as data_stage
from aifab.training import distributed, preflight
from aifab.training.config import TrainSpec
from aifab.training.loop import Outcome, RunFiles, Trainer
from aifab.training.model import ModelConfig, Transformer
from aifab.training.shards import dtype_for, write_shard
from aifab.training.tokenizer import TextTokenizer, train_tokenizer

Report = Callable[[str], None]
# Settings that change how a run is carried out, not what it computes: free to change on resume.
OPERATIONAL = {"device", "compile", "threads", "eval_every", "eval_batches", "log_every", "checkpoint_every",
               "patience", "sample_tokens", "sample_prompt", "distributed", "workers", "ray_address"}


def key_of(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class RunPaths:
    root: Path

    def stage(self, name: str) -> Path:
        return self.root / name

    @property
    def train(self) -> RunFiles:
        return RunFiles(self.root / "train")


def stamp_matches(folder: Path, key: str) -> dict[str, Any] | None:
    path = folder / "stamp.json"
    if not path.is_file():
        return None
    stamp = json.loads(path.read_text())
    return dict(stamp) if stamp.get("key") == key else None


def write_stamp(folder: Path, key: str, info: dict[str, Any]) -> None:
    tmp = folder / "stamp.json.tmp"
    tmp.write_text(json.dumps({"key": key, **info}, indent=2))
    os.replace(tmp, folder / "stamp.json")


class Pipeline:
    """One training run. ``settings`` gives the data directory and the state database (collections);
    ``registry`` receives the package; ``report`` gets one line per event."""

    def __init__(self, spec: TrainSpec, *, data_dir: Path, settings: Any = None, registry: Any = None,
                 report: Report = lambda _m: None, progress: Callable[[str, int, int], None] | None = None) -> None:
        self.spec, self.settings, self.registry = spec, settings, registry
        self.data_dir = data_dir
        self.report = report
        self.progress = progress or (lambda _task, _done, _total: None)
        root = Path(spec.run.run_dir) if spec.run.run_dir else data_dir / "runs" / spec.run.name
        self.paths = RunPaths(root.resolve())

    # --- stages -------------------------------------------------------------------------------

    def prepare_data(self) -> dict[str, Any]:
        cfg = self.spec.data
        collection = (data_stage.collection_files(self.settings, cfg.collection)
                      if cfg.collection else None)
        sources = data_stage.discover(cfg, collection)
        fingerprint = [(str(s.path.resolve()), s.path.stat().st_size, s.path.stat().st_mtime_ns) for s in sources]
        key = key_of({"data": asdict(cfg), "files": fingerprint})
        out = self.paths.stage("data")
        if (stamp := stamp_matches(out, key)) is not None:
            self.report(f"data: unchanged ({stamp['documents']} documents, sha256 {stamp['sha256'][:12]})")
            return stamp
        shutil.rmtree(out, ignore_errors=True)
        stats = data_stage.build(sources, cfg, out, self.report)
        write_stamp(out, key, stats)
        return {"key": key, **stats}

    def prepare_tokenizer(self, data: dict[str, Any]) -> tuple[TextTokenizer, str]:
        cfg = self.spec.tokenizer
        if cfg.tokenizer == "char":  # exact: one token per character
            preflight.check_context(self.spec.model.block_size,
                                    {"training": data["train_chars"], "validation": data["val_chars"]}, "characters")
        key = key_of({"tokenizer": asdict(cfg), "data": data["sha256"]})
        out = self.paths.stage("tokenizer")
        if stamp_matches(out, key) is not None:
            tok = TextTokenizer.load(out)
            self.report(f"tokenizer: unchanged ({tok.kind}, {tok.vocab_size} tokens)")
            return tok, key
        shutil.rmtree(out, ignore_errors=True)
        tok = train_tokenizer(self.paths.stage("data") / "train.txt", cfg)
        tok.save(out)
        write_stamp(out, key, {"kind": tok.kind, "vocab_size": tok.vocab_size})
        self.report(f"tokenizer: {tok.kind}, {tok.vocab_size} tokens (trained on the training split)")
        return tok, key

    def prepare_shards(self, tok: TextTokenizer, tok_key: str, data: dict[str, Any]) -> dict[str, Any]:
        out = self.paths.stage("shards")
        key = key_of({"tokenizer": tok_key})
        if (stamp := stamp_matches(out, key)) is not None:
            self.report(f"shards: unchanged ({stamp['train_tokens']:,} train / {stamp['val_tokens']:,} val tokens)")
            return stamp
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        counts: dict[str, int] = {}
        for split in ("train", "val"):
            total, done = data[f"{split}_chars"], 0

            def advance(n: int, split: str = split, total: int = total) -> None:
                nonlocal done
                done += n
                self.progress(f"tokenize {split}", done, total)

            counts[f"{split}_tokens"] = write_shard(self.paths.stage("data") / f"{split}.txt", tok,
                                                    out / f"{split}.bin", progress=advance)
        meta = {**counts, "dtype": str(dtype_for(tok.vocab_size)().dtype), "vocab_size": tok.vocab_size,
                "chars_per_token": (data["train_chars"] + data["val_chars"]) / max(1, sum(counts.values()))}
        (out / "shards.json").write_text(json.dumps(meta, indent=2))
        write_stamp(out, key, meta)
        self.report(f"shards: {counts['train_tokens']:,} train / {counts['val_tokens']:,} val tokens "
                    f"({meta['chars_per_token']:.2f} characters per token)")
        return meta

    # --- the whole run ------------------------------------------------------------------------

    def model_config(self, vocab_size: int) -> ModelConfig:
        return replace(self.spec.model, vocab_size=vocab_size)

    def fingerprint(self, data: dict[str, Any], tok_key: str, mcfg: ModelConfig) -> str:
        optim = {k: v for k, v in asdict(self.spec.train).items() if k not in OPERATIONAL}
        return key_of({"data": data["sha256"], "tokenizer": tok_key, "model": mcfg.to_dict(), "optim": optim})

    def run(self, *, hook: Callable[[int], None] | None = None) -> dict[str, Any]:
        """All stages; returns a summary (stages, training outcome, package).

        Under torchrun, rank 0 prepares the stages while the other ranks wait, then find them done."""
        t = self.spec.train
        device = distributed.resolve_device(t.device, distributed.local_rank_hint())
        torch.set_num_threads(t.threads or os.cpu_count() or 1)
        preflight.check_memory(self.model_config(self._vocab_guess()), t, device)  # before any stage
        d = distributed.setup(device) if t.distributed != "ray" else distributed.Dist()
        try:
            if not d.main:
                self.report = lambda _m: None
                torch.distributed.barrier()
            summary = self._run(device, d.main, hook)
        finally:
            distributed.teardown(d)
        return summary

    def _run(self, device: torch.device, main: bool, hook: Callable[[int], None] | None) -> dict[str, Any]:
        t = self.spec.train
        data = self.prepare_data()
        tok, tok_key = self.prepare_tokenizer(data)
        shards = self.prepare_shards(tok, tok_key, data)
        mcfg = self.model_config(tok.vocab_size)
        preflight.check_context(mcfg.block_size, {"training": shards["train_tokens"],
                                                  "validation": shards["val_tokens"]}, "tokens")
        preflight.check_memory(mcfg, t, device)
        fingerprint = self.fingerprint(data, tok_key, mcfg)
        files = self.paths.train
        if self.spec.run.restart and main:
            shutil.rmtree(files.root, ignore_errors=True)
        if main and torch.distributed.is_initialized():
            torch.distributed.barrier()  # the other ranks may start: every stage is on disk
        job = {"spec": self.spec.to_dict(), "model": mcfg.to_dict(), "root": str(self.paths.root),
               "fingerprint": fingerprint}
        if t.distributed == "ray":
            self.report(f"training with Ray Train: {t.workers} workers")
            distributed.run_with_ray(ray_worker, job, workers=t.workers, address=t.ray_address,
                                     storage=str(self.paths.root / "ray"))
            outcome = Outcome(**{k: v for k, v in json.loads(files.summary.read_text()).items()})
        else:
            outcome = train_job(job, report=self.report, hook=hook,
                                progress=lambda s, n: self.progress("train", s, n))
        summary: dict[str, Any] = {"run_dir": str(self.paths.root), "data": data, "shards": shards,
                                   "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size},
                                   "model": mcfg.to_dict(), "outcome": asdict(outcome), "package": None}
        if outcome.interrupted or not main:
            return summary
        summary["package"] = self.package(tok, mcfg, data, outcome)
        return summary

    def package(self, tok: TextTokenizer, mcfg: ModelConfig, data: dict[str, Any],
                outcome: Outcome) -> dict[str, Any] | None:
        """Register the best checkpoint's weights as a model package (unless ``package = 'none'``)."""
        name = self.spec.run.package or self.spec.run.name
        if name == "none" or self.registry is None:
            return None
        from aifab.training.checkpoint import load
        from aifab.training.export import write_package

        best = load(self.paths.train.best) or load(self.paths.train.last)
        assert best is not None
        model = Transformer(mcfg)
        model.load_state_dict(best["model"])
        lineage = {
            "trained_by": "aifab train", "run": self.spec.run.name, "run_dir": str(self.paths.root),
            "data_sha256": data["sha256"], "data": {k: v for k, v in data.items() if k != "key"},
            "config": self.spec.to_dict(), "model_config": mcfg.to_dict(), "tokenizer": tok.kind,
            "metrics": {"best_val_loss": outcome.best_val_loss, "best_step": outcome.best_step,
                        "last_val_loss": outcome.last_val_loss, "steps": outcome.step,
                        "tokens": outcome.tokens, "stopped_early": outcome.stopped_early},
        }
        pkg = write_package(model, tok, self.registry.models_dir.resolve() / name, name=name, lineage=lineage)
        self.registry.add(pkg, replace=True)
        # the same data directory, or the server would not find the package in its registry
        self.report(f"package: {name} ({pkg.lineage['architecture']}, {pkg.path}); serve it with "
                    f"AIFAB_MODELS__EXTRA='[\"{name}\"]' aifab up --data-dir {shlex.quote(str(self.data_dir))}")
        return {"name": name, "path": pkg.path, "architecture": pkg.lineage["architecture"]}

    def _vocab_guess(self) -> int:
        tok = self.spec.tokenizer
        return tok.vocab_size if tok.tokenizer == "bpe" else 256


def train_job(job: dict[str, Any], *, report: Report = lambda _m: None, hook: Callable[[int], None] | None = None,
              progress: Callable[[int, int], None] | None = None) -> Outcome:
    """The training stage in this process (one rank under torchrun or Ray)."""
    spec = TrainSpec.from_dict(job["spec"])
    mcfg = ModelConfig.from_dict(job["model"])
    paths = RunPaths(Path(job["root"]))
    device = distributed.resolve_device(spec.train.device, distributed.local_rank_hint())
    d = distributed.setup(device)
    try:
        main = d.main
        trainer = Trainer(spec, mcfg, paths.stage("shards"), paths.train, TextTokenizer.load(paths.stage("tokenizer")),
                          job["fingerprint"], device=device, dist=d, report=report if main else lambda _m: None,
                          progress=progress if main else None, hook=hook)
        if trainer.resume():
            report(f"resuming at step {trainer.step} from {paths.train.last}")
        params = sum(p.numel() for p in trainer.model.parameters())
        report(f"training: {params / 1e6:.2f} M parameters ({mcfg.architecture}), {spec.train.steps} steps on "
               f"{device}{f' x {d.world} processes' if d.enabled else ''}")
        outcome = trainer.run()
        if outcome.interrupted:
            report(f"interrupted at step {outcome.step}: checkpoint saved; run the same command to resume")
        return outcome
    finally:
        distributed.teardown(d)


def ray_worker(job: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``: the process group is up; train as one rank."""
    torch.set_num_threads(max(1, int(job["spec"]["train"]["threads"]) or 1))
    train_job(job, report=print)
