"""Prompt-injection guard quality and cost: precision, recall and false-positive rate of the default
configuration (``InjectionGuard()``, blocking at score ≥ 1.0) on the held-out half of the labelled set
``tests/data/injection_set.jsonl``, and the p99 of the whole default input pipeline on 2-8 KB requests.

The set (JSON lines: text, label ``malicious``/``benign``, split, source) holds our own attacks and benign
look-alikes (a user revising an earlier request, "developer mode" on a phone, tags in XML questions,
letter-spaced, full-width and Cyrillic text that is harmless) plus the rows of two MIT-licensed packages:
``bastioncorpus`` 0.6.0 and ``jailbreak-corpus-mini-py`` 0.1.0. Each source and label is split in two
halves by the SHA-256 of the text: ``tune`` (the rules were adjusted looking at it) and ``holdout`` (never
looked at while tuning). Rows in split ``extra`` are attacks that no phrasing rule is meant to catch
(instructions to call a tool, to append a canary token, payloads in encodings other than base64/rot13);
their recall is printed apart and not counted.

    .venv/bin/python benchmarks/injection.py             # held-out figures + latency, ~10 s
    .venv/bin/python benchmarks/injection.py --split tune --misses   # the half used for tuning, with errors
    .venv/bin/python benchmarks/injection.py --docs      # + paragraphs of the Python docs blocked (~1 min)

Targets: recall ≥ 0.9, false-positive rate on benign look-alikes ≤ 0.02, p99 ≤ 20 ms on 2-8 KB input."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))
from corpora import CorpusUnavailable, list_files, python_docs  # noqa: E402
from guardrails import TARGET_MS, _time_each, typical_requests  # noqa: E402
from inference import Contention, percentile  # noqa: E402

from aifab.config import GuardrailSettings  # noqa: E402
from aifab.gateway.guards import Guardrails, InjectionGuard  # noqa: E402

SET = HERE.parent / "tests" / "data" / "injection_set.jsonl"
TARGETS = {"recall": 0.9, "fpr": 0.02}


@dataclass
class Figures:
    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0


def load(path: Path = SET) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def evaluate(rows: list[dict[str, str]], guard: InjectionGuard) -> tuple[Figures, list[dict[str, str]]]:
    """Confusion counts of ``guard.strong`` against the labels, and the misclassified rows."""
    fig, wrong = Figures(), []
    for row in rows:
        blocked = guard.strong(guard.scan(row["text"]))
        attack = row["label"] == "malicious"
        if attack:
            fig.tp += blocked
            fig.fn += not blocked
        else:
            fig.fp += blocked
            fig.tn += not blocked
        if blocked != attack:
            wrong.append(row)
    return fig, wrong


def docs_blocked(guard: InjectionGuard) -> tuple[int, int]:
    """(paragraphs blocked, paragraphs) over every page of the Python 3.11 docs' reST sources: ordinary
    technical prose that says "ignore", "instructions", "system" and "prompt" a lot."""
    paragraphs = [p for f in list_files(python_docs()).files
                  for p in re.split(r"\n\s*\n", f.read_text(errors="replace")) if len(p) > 40]
    return sum(guard.strong(guard.scan(p)) for p in paragraphs), len(paragraphs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="holdout", choices=("holdout", "tune"))
    ap.add_argument("--misses", action="store_true", help="print the misclassified rows of the split")
    ap.add_argument("--set", type=Path, default=SET)
    ap.add_argument("--docs", action="store_true", help="also count Python-docs paragraphs blocked")
    args = ap.parse_args()
    rows, guard = load(args.set), InjectionGuard()
    fig, wrong = evaluate([r for r in rows if r["split"] == args.split], guard)
    extra, _ = evaluate([r for r in rows if r["split"] == "extra"], guard)
    print(f"injection set, {args.split} half: {fig.tp + fig.fn} attacks, {fig.fp + fig.tn} benign look-alikes")
    print(f"  precision {fig.precision:.3f}  recall {fig.recall:.3f}  false-positive rate {fig.fpr:.3f}"
          f"  (tp {fig.tp}, fn {fig.fn}, fp {fig.fp}, tn {fig.tn})")
    print(f"  out of scope ('extra', not counted): {extra.tp}/{extra.tp + extra.fn} attacks blocked")
    if args.misses:
        for row in wrong:
            print(f"  {'MISSED' if row['label'] == 'malicious' else 'BLOCKED'} [{row['source']}] {row['text']!r}")
    if args.docs:
        try:
            n, total = docs_blocked(guard)
            print(f"Python 3.11 docs (reST sources): {n} of {total} paragraphs blocked")
        except CorpusUnavailable as e:
            print(f"Python docs: not measured ({e})")
    pipeline = Guardrails(GuardrailSettings())
    contention = Contention()
    samples = _time_each(pipeline.check_input, typical_requests(300))
    foreign = contention.end("latency")
    wall, cpu = [w for w, _ in samples], [c for _, c in samples]
    p99 = percentile(wall, 99)
    print(f"default input guardrails (PII, secrets, injection) on 300 requests of 2-8 KB: p50 {percentile(wall, 50):.2f}"
          f" ms, p99 {p99:.2f} ms wall; CPU of this thread p50 {percentile(cpu, 50):.2f}, p99 {percentile(cpu, 99):.2f} ms"
          f" (other processes used {foreign:.2f} cores meanwhile)")
    met = fig.recall >= TARGETS["recall"] and fig.fpr <= TARGETS["fpr"] and p99 <= TARGET_MS
    print(f"targets: recall ≥ {TARGETS['recall']}, false-positive rate ≤ {TARGETS['fpr']}, p99 ≤ {TARGET_MS:g} ms: "
          f"{'met' if met else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
