"""Fine-tuning datasets: a dataset-store version directory, or a bare JSONL file, read and validated.

A version directory holds ``train.jsonl``, ``eval.jsonl`` and ``manifest.json`` (``name``, ``version``,
``sha256``, ``kind``: ``sft`` | ``preference``, ``counts``, ``source``). Lines are OpenAI's chat
fine-tuning format, ``{"messages": [{"role", "content"}, ...]}``, where every assistant message is
trained unless it carries ``"weight": 0``; preference lines add ``"chosen"`` and ``"rejected"``
answers to prompt turns (DPO). Every bad line is named with its number in one error, so a dataset is
fixed in one pass, not one error at a time.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aifab.errors import InvalidRequest

Kind = Literal["sft", "preference"]
ROLES = ("system", "user", "assistant")
MIN_SPLIT = 10  # a bare file smaller than this cannot give both splits an example worth the name
SPLIT_SEED = 20240607
MAX_REPORTED = 20  # bad lines named in one error


@dataclass
class Example:
    """One training example: chat turns, plus the two answers of a preference pair."""

    messages: list[dict[str, Any]]
    chosen: str | None = None
    rejected: str | None = None
    line: int = 0  # 1-based line in its file, for error messages

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"messages": self.messages}
        if self.chosen is not None:
            out.update(chosen=self.chosen, rejected=self.rejected)
        return out


@dataclass
class Dataset:
    """A dataset version: its identity (recorded in the lineage of what is trained on it) and splits."""

    name: str
    version: str
    sha256: str
    kind: Kind
    train: list[Example]
    eval: list[Example]
    source: Any = None
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def lineage(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "kind": self.kind,
                "path": self.path, "counts": {"train": len(self.train), "eval": len(self.eval)}}


def _check_messages(messages: Any, *, kind: Kind) -> str | None:
    """Why ``messages`` is not valid, or None."""
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    trained = 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return f"messages[{i}] is not an object"
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            return f"messages[{i}].role is {role!r}; expected one of {', '.join(ROLES)}"
        if not isinstance(content, str):
            return f"messages[{i}].content must be a string"
        weight = m.get("weight", 1)
        if "weight" in m and (role != "assistant" or weight not in (0, 1)):
            return f"messages[{i}].weight must be 0 or 1, and only on an assistant message"
        trained += role == "assistant" and weight == 1
    if kind == "sft" and trained == 0:
        return "no assistant message to learn from (every assistant message has weight 0, or there is none)"
    if kind == "preference" and messages[-1]["role"] == "assistant":
        return "a preference prompt must not end with an assistant message: the answers are 'chosen'/'rejected'"
    return None


def parse_line(text: str, *, kind: Kind | None) -> tuple[Example, Kind]:
    """One JSONL line -> (example, its kind); ``ValueError`` with the reason when it is not valid."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    line_kind: Kind = "preference" if ("chosen" in obj or "rejected" in obj) else "sft"
    if kind is not None and line_kind != kind:
        raise ValueError(f"a {line_kind} example in a {kind} dataset")
    if (why := _check_messages(obj.get("messages"), kind=line_kind)) is not None:
        raise ValueError(why)
    if line_kind == "preference":
        chosen, rejected = obj.get("chosen"), obj.get("rejected")
        if not isinstance(chosen, str) or not isinstance(rejected, str) or not chosen or not rejected:
            raise ValueError("'chosen' and 'rejected' must be non-empty strings")
        if chosen == rejected:
            raise ValueError("'chosen' and 'rejected' are the same answer")
        return Example(obj["messages"], chosen, rejected), line_kind
    return Example(obj["messages"]), line_kind


def read_jsonl(path: Path, *, kind: Kind | None = None) -> tuple[list[Example], Kind | None]:
    """Every example of ``path``; raise one ``InvalidRequest`` naming each bad line (up to 20)."""
    if not path.is_file():
        raise InvalidRequest(f"no such dataset file: {path}", param="dataset")
    examples: list[Example] = []
    bad: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for number, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                example, line_kind = parse_line(text, kind=kind)
            except ValueError as exc:
                bad.append(f"line {number}: {exc}")
                continue
            kind = kind or line_kind
            example.line = number
            examples.append(example)
    if bad:
        more = f" (and {len(bad) - MAX_REPORTED} more)" if len(bad) > MAX_REPORTED else ""
        raise InvalidRequest(f"{path}: {len(bad)} bad line(s): " + "; ".join(bad[:MAX_REPORTED]) + more,
                             param="dataset")
    return examples, kind


def _sha256(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def load_dataset_dir(path: Path | str, *, seed: int = SPLIT_SEED) -> Dataset:
    """Read a dataset version directory (or a bare ``.jsonl`` file) and validate every line.

    A bare file is split deterministically, 90% train / 10% eval (at least one eval example), after a
    shuffle with a fixed seed; it needs at least :data:`MIN_SPLIT` examples."""
    path = Path(path)
    if path.is_file():
        return _load_file(path, seed)
    if not path.is_dir():
        raise InvalidRequest(f"no such dataset: {path} (a dataset version directory or a .jsonl file)",
                             param="dataset")
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise InvalidRequest(f"{path} is not a dataset version: manifest.json is missing", param="dataset")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{manifest_path} is not JSON: {exc.msg}", param="dataset") from None
    kind = manifest.get("kind", "sft")
    if kind not in ("sft", "preference"):
        raise InvalidRequest(f"{manifest_path}: kind is {kind!r}; expected 'sft' or 'preference'", param="dataset")
    train, _ = read_jsonl(path / "train.jsonl", kind=kind)
    evals = read_jsonl(path / "eval.jsonl", kind=kind)[0] if (path / "eval.jsonl").is_file() else []
    if not train:
        raise InvalidRequest(f"{path / 'train.jsonl'} has no examples", param="dataset")
    files = [p for p in (path / "train.jsonl", path / "eval.jsonl") if p.is_file()]
    return Dataset(
        name=str(manifest.get("name") or path.parent.name), version=str(manifest.get("version") or path.name),
        sha256=str(manifest.get("sha256") or _sha256(files)), kind=kind, train=train, eval=evals,
        source=manifest.get("source"), path=str(path.resolve()),
        extra={"counts": manifest.get("counts", {})},
    )


def _load_file(path: Path, seed: int) -> Dataset:
    examples, kind = read_jsonl(path)
    if len(examples) < MIN_SPLIT:
        raise InvalidRequest(
            f"{path} has {len(examples)} example(s); splitting a file into train and eval needs at least "
            f"{MIN_SPLIT} (or give a dataset directory with its own eval.jsonl)", param="dataset")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, len(examples) // 10)
    evals = sorted(order[:n_eval])
    train = sorted(order[n_eval:])
    return Dataset(name=path.stem, version="file", sha256=_sha256([path]), kind=kind or "sft",
                   train=[examples[i] for i in train], eval=[examples[i] for i in evals],
                   source={"file": str(path.resolve())}, path=str(path.resolve()),
                   extra={"split": {"seed": seed, "eval_fraction": 0.1}})


def resolve_dataset(spec: str, data_dir: Path) -> Path:
    """A CLI ``--dataset``: a directory or file, else a name in ``<data_dir>/datasets/NAME/`` (its
    latest ``vN``, or ``NAME@vN``)."""
    as_path = Path(spec)
    if as_path.exists():
        return as_path
    name, _, version = spec.partition("@")
    root = data_dir / "datasets" / name
    if not root.is_dir():
        raise InvalidRequest(f"no dataset '{spec}': not a file or directory, and {root} does not exist "
                             "(see `aifab datasets list`)", param="dataset")
    if version:
        if not (root / version).is_dir():
            raise InvalidRequest(f"dataset '{name}' has no version {version} in {root}", param="dataset")
        return root / version
    versions = sorted((p for p in root.iterdir() if p.is_dir() and p.name[1:].isdigit() and p.name[0] == "v"),
                      key=lambda p: int(p.name[1:]))
    if not versions:
        raise InvalidRequest(f"dataset '{name}' has no version directory (v1, v2, ...) in {root}", param="dataset")
    return versions[-1]
