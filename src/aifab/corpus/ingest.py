"""The ingest pipeline: sources → load → chunk → embed → store, kept in sync by content hashes.

Per document, in this order (which is what makes a crashed ingest safe to run again):

1. hash the bytes; a document whose hash and ACL match its row in this collection version is unchanged
   and costs nothing more;
2. load and chunk it; each chunk's id is derived from the document and the chunk's text, so an unchanged
   chunk keeps its id, and its stored vector is reused instead of embedded again;
3. embed the new chunks (in large batches shared across documents), upsert the document's chunks, delete
   the document's stored chunks that are no longer produced;
4. only then write the document's row.

A ``kill -9`` anywhere leaves at worst chunks without a row: the next run redoes steps 2–4 for that
document, finds its surviving chunks by id (no duplicates, nothing embedded twice) and deletes stale ones.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from aifab.corpus.collections import Collections, VersionInfo
from aifab.corpus.jobs import Jobs
from aifab.corpus.protocol import Chunker, Document, Embedder
from aifab.corpus.sources import Source, under
from aifab.errors import AifabError, InvalidDocument, NothingToIndex, out_of_space
from aifab.state.tables import DocumentRow
from aifab.stores.protocol import ChunkRecord

LOADER_VERSION = 1
LoadFn = Callable[[bytes, str], Document]
ProgressFn = Callable[["IngestReport", str], None]


@dataclass
class IngestReport:
    collection: str
    version: int = 0
    new_version: bool = False
    job_id: str = ""
    files_total: int = 0
    files_done: int = 0
    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    documents_deleted: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_deleted: int = 0
    seconds: float = 0.0
    errors: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # files with nothing to index: not errors

    @property
    def status(self) -> str:
        if not self.errors:
            return "succeeded"
        return "failed" if self.errors and not (self.documents_added + self.documents_updated
                                                 + self.documents_unchanged) else "partial"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


@dataclass
class _Pending:
    source: Source
    size: int
    content_hash: str
    document: Document
    records: list[ChunkRecord]
    missing: list[int]  # indexes into records that need embedding
    existed: bool


def chunk_id(document_id: str, text: str, occurrence: int) -> str:
    digest = hashlib.sha256(f"{document_id}\0{occurrence}\0{text}".encode()).hexdigest()
    return digest[:32]


class Ingestor:
    """Runs ingests into collections. ``embed_batch`` chunks are embedded per model call; documents are
    gathered until at least ``flush_chunks`` chunks wait, so that batches stay full across small files."""

    def __init__(
        self,
        collections: Collections,
        jobs: Jobs,
        embedder: Embedder,
        chunker: Chunker,
        load: LoadFn,
        *,
        max_file_bytes: int,
        flush_chunks: int = 256,
    ) -> None:
        self.collections = collections
        self.store = collections.store
        self.db = collections.db
        self.jobs = jobs
        self.embedder = embedder
        self.chunker = chunker
        self.load = load
        self.max_file_bytes = max_file_bytes
        self.flush_chunks = flush_chunks

    def pipeline(self) -> dict[str, Any]:
        """What the chunks and vectors depend on; a change builds a new collection version."""
        return {
            "loader_version": LOADER_VERSION,
            "chunker": self.chunker.fingerprint(),
            "embedder": self.embedder.name,
            "dimensions": self.embedder.dimensions,
        }

    def run(
        self,
        collection: str,
        sources: Sequence[Source],
        *,
        acl: Iterable[str] = (),
        prune_roots: Sequence[Path] | None = None,
        errors: Iterable[dict[str, str]] = (),
        job_id: str | None = None,
        on_progress: ProgressFn | None = None,
    ) -> IngestReport:
        started = time.perf_counter()
        tags = sorted(set(acl))
        report = IngestReport(collection=collection, files_total=len(sources), errors=list(errors))
        version, report.new_version = self.collections.version_for(collection, self.pipeline(),
                                                                    self.embedder.dimensions)
        report.version = version.version
        report.job_id = self.jobs.start(collection, job_id=job_id)
        status, failure = "failed", None
        try:
            rows = self._rows(version)
            pending: list[_Pending] = []
            waiting = 0
            for src in sources:
                if on_progress:
                    on_progress(report, src.source)
                try:
                    item = self._prepare(version, src, tags, rows.get(src.document_id))
                except NothingToIndex as exc:
                    report.skipped.append({"path": src.source, "reason": exc.message})
                    item = None
                except InvalidDocument as exc:
                    report.errors.append({"path": src.source, "reason": exc.message})
                    item = None
                else:
                    if item is None:
                        report.documents_unchanged += 1
                if item is not None:
                    pending.append(item)
                    waiting += len(item.missing)
                    if waiting >= self.flush_chunks:
                        self._flush(version, pending, tags, report)
                        pending, waiting = [], 0
                report.files_done += 1
                self._progress(report)
            self._flush(version, pending, tags, report)
            if prune_roots:
                seen = {s.document_id for s in sources}
                for document_id, row in rows.items():
                    if document_id not in seen and under(row.source, prune_roots):
                        report.chunks_deleted += self.collections.remove_document(version, document_id)
                        report.documents_deleted += 1
            status = report.status
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except Exception as exc:
            error = out_of_space(exc) or exc  # a full disk: the job says so, the caller gets one clear error
            failure = error.message if isinstance(error, AifabError) else f"internal error: {type(exc).__name__}"
            if error is exc:
                raise
            raise error from exc
        finally:
            report.seconds = round(time.perf_counter() - started, 3)
            summary = report.to_dict()
            if failure is not None:
                summary["error"] = failure
            self.jobs.finish(report.job_id, status, summary)
        return report

    # -- steps ----------------------------------------------------------------------------------------

    def _rows(self, version: VersionInfo) -> dict[str, DocumentRow]:
        with self.db.session() as s:
            rows = s.scalars(
                select(DocumentRow).where(DocumentRow.collection == version.collection,
                                          DocumentRow.version == version.version)
            ).all()
        return {r.document_id: r for r in rows}

    def _prepare(self, version: VersionInfo, src: Source, tags: list[str], row: DocumentRow | None) -> _Pending | None:
        data = src.read(self.max_file_bytes)
        content_hash = hashlib.sha256(data).hexdigest()
        if row is not None and row.content_hash == content_hash and sorted(row.acl) == tags:
            return None
        document = self.load(data, src.source)
        if not any(b.kind != "heading" and b.text.strip() for b in document.blocks):
            # e.g. a page of nothing but a title and a table of contents; said before the chunker runs,
            # so that re-ingesting such a page does not load the embedding model to count tokens
            raise NothingToIndex("no text to index after loading (only headings)")
        chunks = self.chunker.chunk(document)
        if not chunks:
            raise NothingToIndex("no text to index after loading")
        seen: Counter[str] = Counter()
        records = []
        for i, c in enumerate(chunks):
            occurrence = seen[c.text]
            seen[c.text] += 1
            records.append(
                ChunkRecord(
                    id=chunk_id(src.document_id, c.text, occurrence),
                    document_id=src.document_id,
                    text=c.text,
                    metadata={
                        "source": src.source, "title": document.title, "format": document.format,
                        "section": list(c.section), "page": c.page, "start": c.start, "end": c.end,
                        "chunk": i, "tokens": c.tokens,
                    },
                    acl=tuple(tags),
                )
            )
        stored = {r.id: r.vector for r in self.store.fetch(version.namespace, [r.id for r in records], vectors=True)}
        missing = []
        for i, r in enumerate(records):
            if r.id in stored:
                r.vector = stored[r.id]
            else:
                missing.append(i)
        return _Pending(src, len(data), content_hash, document, records, missing, existed=row is not None)

    def _flush(self, version: VersionInfo, pending: list[_Pending], tags: list[str], report: IngestReport) -> None:
        if not pending:
            return
        texts = [p.records[i].text for p in pending for i in p.missing]
        try:
            vectors = self.embedder.embed(texts) if texts else None
        except AifabError as exc:
            for p in pending:
                report.errors.append({"path": p.source.source, "reason": f"embedding failed: {exc.message}"})
            return
        at = 0
        for p in pending:
            for i in p.missing:
                assert vectors is not None
                p.records[i].vector = vectors[at]
                at += 1
            self._commit(version, p, tags)
            report.chunks_embedded += len(p.missing)
            report.chunks_reused += len(p.records) - len(p.missing)
            if p.existed:
                report.documents_updated += 1
            else:
                report.documents_added += 1

    def _commit(self, version: VersionInfo, p: _Pending, tags: list[str]) -> None:
        ns = version.namespace
        self.store.upsert(ns, p.records)
        stale = self.store.document_chunks(ns, p.source.document_id) - {r.id for r in p.records}
        if stale:
            self.store.delete(ns, stale)
        with self.db.session() as s:
            row = s.get(DocumentRow, (version.collection, version.version, p.source.document_id))
            if row is None:
                row = DocumentRow(collection=version.collection, version=version.version,
                                  document_id=p.source.document_id)
                s.add(row)
            row.source, row.content_hash, row.acl = p.source.source, p.content_hash, tags
            row.format, row.title, row.size_bytes = p.document.format, p.document.title[:1024], p.size
            row.chunks, row.updated_at = len(p.records), datetime.now(UTC)

    def _progress(self, report: IngestReport) -> None:
        self.jobs.progress(report.job_id, version=report.version, files_total=report.files_total,
                           files_done=report.files_done, summary=report.to_dict())
