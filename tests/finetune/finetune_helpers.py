"""Small chat datasets for the fine-tuning tests, in the dataset store's layout."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ["apple", "river", "stone", "cloud", "green", "seven", "paper", "light", "music", "table", "north", "sugar"]
ANSWER = "blue"


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": "Answer with one word."},
                         {"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}


def questions(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + "?" for _ in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_dataset(root: Path, train: list[dict], evals: list[dict], *, kind: str = "sft", name: str = "ds",
                  version: str = "v1") -> Path:
    """A dataset version directory in the dataset store's layout."""
    d = root / name / version
    d.mkdir(parents=True)
    write_jsonl(d / "train.jsonl", train)
    write_jsonl(d / "eval.jsonl", evals)
    (d / "manifest.json").write_text(json.dumps({
        "name": name, "version": version, "sha256": "0" * 64, "kind": kind,
        "counts": {"train": len(train), "eval": len(evals)}, "source": {"test": True}}))
    return d
