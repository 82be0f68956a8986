"""Versioned fine-tuning datasets under ``<data_dir>/datasets/NAME/vN/``.

Each version is a directory with ``train.jsonl``, ``eval.jsonl`` and ``manifest.json``
(``{"name", "version", "sha256", "kind", "counts", "source", "created", "files"}``) plus a row in the
``datasets`` table. ``sha256`` is the hash of ``train.jsonl`` followed by ``eval.jsonl``. A version is
written into a temporary directory and renamed into place, so a crash never leaves a half-written ``vN``;
a build whose content hash equals the latest version's writes nothing ("unchanged").

The split is by each example's own hash (about 10% to eval, at least one), so it is the same on every
build and an example never moves between train and eval as the dataset grows.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select

from aifab.errors import Conflict, InvalidRequest, NotFound
from aifab.state import Database
from aifab.state.tables import DatasetRow

Kind = Literal["sft", "preference"]
KINDS: tuple[str, ...] = ("sft", "preference")
EVAL_PERCENT = 10
MIN_EXAMPLES = 10
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_REF = re.compile(r"(?P<name>[^@]+)(?:@v?(?P<version>\d+))?")
_VERSION_DIR = re.compile(r"v(\d+)")


@dataclass(frozen=True)
class DatasetVersion:
    name: str
    version: int
    kind: str
    path: Path
    sha256: str
    counts: dict[str, Any]
    source: dict[str, Any]
    created_at: datetime | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"

    def file(self, split: str) -> Path:
        return self.path / f"{split}.jsonl"

    def manifest(self) -> dict[str, Any]:
        return json.loads(self._existing(self.path / "manifest.json").read_text())

    def examples(self, split: str = "train") -> Iterator[dict[str, Any]]:
        """The examples of ``train`` or ``eval``, one dict per JSONL line."""
        with self._existing(self.file(split)).open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)

    def head(self, n: int) -> list[dict[str, Any]]:
        """The first ``n`` train examples."""
        return list(itertools.islice(self.examples("train"), n))

    def to_dict(self) -> dict[str, Any]:
        return {"object": "dataset", "name": self.name, "version": self.version, "ref": self.ref,
                "kind": self.kind, "sha256": self.sha256, "path": str(self.path), "counts": self.counts,
                "source": self.source, "created": self.created_at.isoformat() if self.created_at else None}

    def _existing(self, path: Path) -> Path:
        if not path.is_file():
            raise NotFound(f"dataset {self.ref} is registered but {path} is missing")
        return path


@dataclass(frozen=True)
class Saved:
    """What a build or an import produced: the version (the latest one when ``created`` is False because the
    content was unchanged), the counts of this run, and the malformed lines an import skipped."""

    version: DatasetVersion
    created: bool
    counts: dict[str, Any]
    problems: tuple[str, ...] = field(default=())


class DatasetStore:
    """Dataset versions: files under ``root`` (``<data_dir>/datasets``), rows in the state database."""

    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.root = root

    def get(self, ref: str) -> DatasetVersion:
        """``NAME`` (the latest version) or ``NAME@vN``."""
        name, version = parse_ref(ref)
        with self.db.session() as s:
            rows = s.scalars(select(DatasetRow).where(DatasetRow.name == name).order_by(DatasetRow.version)).all()
            if not rows:
                raise NotFound(f"dataset {name!r} is not in this data directory (aifab datasets list shows them)",
                               param="dataset")
            if version is None:
                return _version(rows[-1])
            for row in rows:
                if row.version == version:
                    return _version(row)
        have = ", ".join(f"v{r.version}" for r in rows)
        raise NotFound(f"dataset {name}@v{version} is not in this data directory (it has {have})", param="dataset")

    def list(self, name: str | None = None) -> list[DatasetVersion]:
        query = select(DatasetRow).order_by(DatasetRow.name, DatasetRow.version)
        if name is not None:
            query = query.where(DatasetRow.name == name)
        with self.db.session() as s:
            return [_version(r) for r in s.scalars(query)]

    def save(self, name: str, *, kind: str, examples: Sequence[dict[str, Any]], counts: dict[str, Any],
             source: dict[str, Any], min_examples: int = MIN_EXAMPLES) -> Saved:
        """Split ``examples`` (already deduplicated) and store them as the next version of ``name``, or keep
        the latest version when its content hash is the same. Refuses fewer than ``min_examples``, and a
        kind other than the one the name already holds."""
        check_name(name)
        if kind not in KINDS:
            raise InvalidRequest(f"kind must be sft or preference, not {kind!r}", param="kind")
        latest = self._latest(name)
        if latest is not None and latest.kind != kind:  # a job asking for NAME must not get pairs one day
            raise Conflict(f"dataset {name!r} holds {latest.kind} examples; pick another --name for {kind}",
                           param="name")
        check_size(name, len(examples), min_examples)
        train, evals = split(examples)
        data = {"train": _jsonl(train), "eval": _jsonl(evals)}
        sha = hashlib.sha256(data["train"] + data["eval"]).hexdigest()
        counts = {**counts, "examples": len(examples), "train": len(train), "eval": len(evals)}
        if latest is not None and latest.sha256 == sha:
            return Saved(latest, False, counts)
        return Saved(self._write(name, kind, data, sha, counts, source), True, counts)

    def _latest(self, name: str) -> DatasetVersion | None:
        with self.db.session() as s:
            row = s.scalars(select(DatasetRow).where(DatasetRow.name == name)
                            .order_by(DatasetRow.version.desc()).limit(1)).first()
            return _version(row) if row is not None else None

    def _write(self, name: str, kind: str, data: dict[str, bytes], sha: str, counts: dict[str, Any],
               source: dict[str, Any]) -> DatasetVersion:
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()  # not tempfile.mkdtemp: its 0700 would stay on the version directory
        created = datetime.now(UTC)
        try:
            for split_name, content in data.items():
                (tmp / f"{split_name}.jsonl").write_bytes(content)
            latest = self._latest(name)
            version = max([latest.version if latest else 0, *_on_disk(home)]) + 1
            while True:  # another build may take a number first: then the next one
                manifest = {"name": name, "version": version, "sha256": sha, "kind": kind, "counts": counts,
                            "source": source, "created": created.isoformat(),
                            "files": {f"{k}.jsonl": hashlib.sha256(v).hexdigest() for k, v in data.items()}}
                (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
                _fsync_files(tmp)
                target = home / f"v{version}"
                try:
                    os.rename(tmp, target)
                    break
                except OSError:
                    if not target.exists():
                        raise
                    version += 1
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        row = DatasetRow(name=name, version=version, kind=kind, path=str(target.resolve()), sha256=sha,
                         counts=counts, source=source, created_at=created)
        try:
            with self.db.session() as s:
                s.add(row)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # never a directory the database does not know
            raise
        return _version(row)


def parse_ref(ref: str) -> tuple[str, int | None]:
    match = _REF.fullmatch(ref.strip())
    if match is None:
        raise InvalidRequest(f"bad dataset reference {ref!r}: use NAME or NAME@vN", param="dataset")
    version = match["version"]
    return match["name"], int(version) if version is not None else None


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidRequest(f"bad dataset name {name!r}: 1-128 characters of A-Z a-z 0-9 . _ -, "
                             "starting with a letter or digit", param="name")


def check_size(name: str, found: int, minimum: int) -> None:
    if minimum < 2:
        raise InvalidRequest(f"--min-examples must be at least 2 (one train, one eval), not {minimum}",
                             param="min_examples")
    if found < minimum:
        raise InvalidRequest(
            f"dataset {name!r} is too small to split into train and eval: {found} example(s) after filtering "
            f"and deduplication, at least {minimum} needed (--min-examples)", param="min_examples")


def example_hash(example: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(example, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def split(examples: Sequence[dict[str, Any]], eval_percent: int = EVAL_PERCENT
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and eval, each ordered by example hash; an example goes to eval when its hash falls in the
    first ``eval_percent`` of the range. With at least two examples, each side gets at least one."""
    hashed = sorted((example_hash(e), e) for e in examples)
    train = [(h, e) for h, e in hashed if int(h[:8], 16) % 100 >= eval_percent]
    evals = [(h, e) for h, e in hashed if int(h[:8], 16) % 100 < eval_percent]
    if not evals and len(train) > 1:
        evals.append(train.pop(0))  # the lowest hash: stable as the dataset grows
    if not train and len(evals) > 1:
        train.append(evals.pop())
    return [e for _, e in train], [e for _, e in evals]


def _jsonl(examples: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples).encode("utf-8")


def _on_disk(home: Path) -> list[int]:
    """Version numbers with a directory, registered or not (a crash between rename and commit)."""
    return [int(m[1]) for p in home.iterdir() if (m := _VERSION_DIR.fullmatch(p.name))]


def _fsync_files(path: Path) -> None:
    for f in path.iterdir():
        with f.open("rb") as handle:
            os.fsync(handle.fileno())


def _version(row: DatasetRow) -> DatasetVersion:
    created = row.created_at
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return DatasetVersion(row.name, row.version, row.kind, Path(row.path), row.sha256, row.counts, row.source,
                          created)
