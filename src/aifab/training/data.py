"""The data stage: find the documents, check them, clean, deduplicate, split, hash.

Every file is checked before anything is written, so a binary or non-UTF-8 file stops the run at once
with its name. Documents are processed one at a time (only hashes are kept for deduplication); the
output is ``train.txt`` and ``val.txt`` (documents each followed by one newline, in sorted path order)
and ``data.json`` with the counts and the sha256 of the result.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aifab.errors import InvalidDocument, InvalidRequest, NotFound
from aifab.training.config import DataConfig

Report = Callable[[str], None]


@dataclass
class Source:
    """One document: a file to read, or a collection document loaded through the corpus loaders."""

    path: Path
    via_loader: bool = False  # a collection document: PDF, HTML... go through aifab.corpus.loaders


def discover(cfg: DataConfig, collection_sources: list[Path] | None = None) -> list[Source]:
    """The documents named by ``cfg``, files under folders sorted by path. Raises when there are none."""
    found: list[Source] = []
    suffixes = tuple(s.lower() for s in cfg.extensions)
    for raw in cfg.sources:
        p = Path(raw).expanduser()
        if p.is_file():
            found.append(Source(p))
        elif p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(suffixes)
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not files:
                raise InvalidRequest(f"no text files under {p} (looked for {', '.join(suffixes)})")
            found += [Source(f) for f in files]
        else:
            raise InvalidRequest(f"no such file or folder: {p}")
    found += [Source(p, via_loader=True) for p in collection_sources or []]
    if not found:
        raise InvalidRequest("the corpus is empty: give text files or folders (sources) or a collection")
    return found


def read_text(source: Source) -> str:
    """The document's text; a binary or non-UTF-8 file raises ``InvalidDocument`` naming it."""
    try:
        data = source.path.read_bytes()
    except OSError as exc:
        raise InvalidDocument(f"cannot read {source.path}: {exc.strerror}") from exc
    if source.via_loader:
        from aifab.corpus.loaders import load_document

        try:
            return load_document(data, str(source.path), max_bytes=1 << 40).text
        except InvalidDocument as exc:
            raise InvalidDocument(f"{source.path}: {exc.message}") from exc
    if b"\0" in data[:65536]:
        raise InvalidDocument(f"{source.path} is a binary file (it contains NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidDocument(
            f"{source.path} is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "convert it first, e.g. iconv -f latin1 -t utf-8"
        ) from exc


def clean(text: str, cfg: DataConfig) -> str:
    """Line endings to ``\\n``; with ``repair_encoding``, mojibake and control characters fixed by ftfy
    (quotes, ligatures and character widths are left as written)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if cfg.repair_encoding and not text.isascii():
        import ftfy

        text = ftfy.fix_text(text, ftfy.TextFixerConfig(
            uncurl_quotes=False, fix_latin_ligatures=False, fix_character_width=False, unescape_html=False,
            explain=False,
        ))
    return text


class _Dedup:
    """Exact deduplication by sha256: whole documents, and optionally long lines."""

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self.docs: set[bytes] = set()
        self.lines: set[bytes] = set()
        self.dropped_docs = 0
        self.dropped_lines = 0

    def document(self, text: str) -> bool:
        if not self.cfg.dedup_documents:
            return True
        h = hashlib.sha256(text.encode()).digest()
        if h in self.docs:
            self.dropped_docs += 1
            return False
        self.docs.add(h)
        return True

    def filter_lines(self, text: str) -> str:
        if not self.cfg.dedup_lines:
            return text
        kept = []
        for line in text.split("\n"):
            if len(line.strip()) >= self.cfg.dedup_min_line_chars:
                h = hashlib.sha256(line.strip().encode()).digest()
                if h in self.lines:
                    self.dropped_lines += 1
                    continue
                self.lines.add(h)
            kept.append(line)
        return "\n".join(kept)


def _documents(sources: list[Source], cfg: DataConfig, stats: dict[str, Any]) -> Iterator[tuple[str, str]]:
    dedup = _Dedup(cfg)
    for src in sources:
        text = clean(read_text(src), cfg)
        if not dedup.document(text):  # whole documents first: a copy must not survive by losing lines
            continue
        text = dedup.filter_lines(text)
        if not text.strip() or len(text) < cfg.min_doc_chars or (cfg.max_doc_chars and len(text) > cfg.max_doc_chars):
            stats["filtered_length"] += 1
            continue
        stats["documents"] += 1
        yield str(src.path), text
    stats["duplicate_documents"] = dedup.dropped_docs
    stats["duplicate_lines"] = dedup.dropped_lines


def check_sources(sources: list[Source]) -> None:
    """Read every file once (binary, encoding) before any output is written."""
    for src in sources:
        read_text(src)


def build(sources: list[Source], cfg: DataConfig, out: Path, report: Report = lambda _m: None) -> dict[str, Any]:
    """Write ``out/train.txt``, ``out/val.txt`` and ``out/data.json``; returns the stats."""
    check_sources(sources)
    out.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {"files": len(sources), "documents": 0, "filtered_length": 0}
    tmp = {name: out / f"{name}.txt.partial" for name in ("all", "train", "val")}
    if cfg.split == "documents":
        with open(tmp["train"], "w", encoding="utf-8", newline="") as tr, \
                open(tmp["val"], "w", encoding="utf-8", newline="") as va:
            for _path, text in _documents(sources, cfg, stats):
                bucket = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64
                (va if bucket < cfg.val_fraction else tr).write(text + "\n")
    else:
        total = 0
        with open(tmp["all"], "w", encoding="utf-8", newline="") as fh:
            for _path, text in _documents(sources, cfg, stats):
                fh.write(text + "\n")
                total += len(text) + 1
        _split_tail(tmp["all"], int(total * (1 - cfg.val_fraction)), tmp["train"], tmp["val"])
        tmp["all"].unlink()
    if stats["documents"] == 0:
        raise InvalidRequest(
            f"the corpus is empty after cleaning: {stats['files']} file(s), none with text "
            f"(min_doc_chars={cfg.min_doc_chars}, max_doc_chars={cfg.max_doc_chars})"
        )
    digest = hashlib.sha256()
    for name in ("train", "val"):
        size = _hash_into(digest, tmp[name])
        stats[f"{name}_chars"] = _count_chars(tmp[name])
        stats[f"{name}_bytes"] = size
        digest.update(b"\0")
    if stats["val_chars"] == 0 or stats["train_chars"] == 0:
        raise InvalidRequest(
            f"the {'validation' if stats['val_chars'] == 0 else 'training'} split is empty: "
            f"{stats['documents']} document(s) with split={cfg.split}; add text, change val_fraction, "
            "or use split = 'tail'"
        )
    for name in ("train", "val"):
        os.replace(tmp[name], out / f"{name}.txt")
    stats["sha256"] = digest.hexdigest()
    (out / "data.json").write_text(json.dumps(stats, indent=2))
    report(f"data: {stats['documents']} documents ({stats['duplicate_documents']} duplicates dropped), "
           f"{stats['train_chars']:,} train / {stats['val_chars']:,} val characters, sha256 {stats['sha256'][:12]}")
    return stats


def _split_tail(src: Path, at: int, train: Path, val: Path, chunk: int = 1 << 20) -> None:
    """The first ``at`` characters of ``src`` to ``train``, the rest to ``val``, streamed."""
    with open(src, encoding="utf-8", newline="") as fh, open(train, "w", encoding="utf-8", newline="") as tr:
        left = at
        while left > 0 and (block := fh.read(min(chunk, left))):
            tr.write(block)
            left -= len(block)
        with open(val, "w", encoding="utf-8", newline="") as va:
            shutil.copyfileobj(fh, va, chunk)


def _hash_into(digest: Any, path: Path, chunk: int = 1 << 20) -> int:
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
            size += len(block)
    return size


def _count_chars(path: Path, chunk: int = 1 << 20) -> int:
    n = 0
    with open(path, encoding="utf-8", newline="") as fh:
        while block := fh.read(chunk):
            n += len(block)
    return n


def collection_files(settings: Any, name: str) -> list[Path]:
    """The source files of the live version of collection ``name`` (their loaders give the text)."""
    from sqlalchemy import select

    from aifab.state import Database
    from aifab.state.tables import CollectionRow, DocumentRow

    db = Database(settings.effective_database_url)
    db.upgrade()
    with db.session() as s:
        row = s.get(CollectionRow, name)
        if row is None:
            raise NotFound(f"collection '{name}' does not exist (see `aifab collections list`)", param="collection")
        if row.live_version is None:
            raise InvalidRequest(f"collection '{name}' has no documents yet: ingest some first")
        sources = s.scalars(select(DocumentRow.source).where(
            DocumentRow.collection == name, DocumentRow.version == row.live_version).order_by(DocumentRow.source)).all()
    paths = [Path(p) for p in sources]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InvalidRequest(f"collection '{name}': {len(missing)} source file(s) are gone, e.g. {missing[0]}; "
                             "re-ingest with --prune")
    return paths
