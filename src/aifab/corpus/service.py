"""The corpus block wired from settings: collections, jobs and the ingest pipeline.

The embedding model is loaded on the first ingest, not at start-up: listing collections or deleting a
document should not wait for a model. Inside the server, ``engines`` gives the models already loaded, and
the corpus embeds with the embedding engine's copy rather than loading its own."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select

from aifab.config import Settings
from aifab.corpus.collections import Collections
from aifab.corpus.ingest import Ingestor, IngestReport, ProgressFn
from aifab.corpus.jobs import Jobs
from aifab.corpus.protocol import Embedder
from aifab.corpus.sources import Source, discover
from aifab.corpus.uploads import upload_source
from aifab.engines.protocol import Engine
from aifab.errors import NotFound
from aifab.registry import Registry
from aifab.state.tables import DocumentRow
from aifab.stores.protocol import VectorStore

# resume(job_id, collection, sources, acl, errors): run an upload job again (the server's ingest worker)
Resume = Callable[[str, str, list[Source], list[str], list[dict[str, str]]], Any]


class Corpus:
    def __init__(self, settings: Settings, registry: Registry, store: VectorStore,
                 embedder: Embedder | None = None, engines: Callable[[], Iterable[Engine]] | None = None) -> None:
        self.settings = settings
        self.uploads_dir = settings.data_dir / "uploads"
        self.registry = registry
        self.store = store
        self.collections = Collections(registry.db, store)
        self.jobs = Jobs(registry.db)
        self._embedder = embedder
        self._engines = engines
        self._ingestors: dict[tuple[int, int], Ingestor] = {}  # by (chunk tokens, overlap)
        self._lock = threading.Lock()

    def embedder(self) -> Embedder:
        """The configured embedding model (loaded on first use): ingest and queries share it."""
        with self._lock:
            if self._embedder is None:
                from aifab.corpus.embedders import load_embedder

                self._embedder = load_embedder(self.settings, self.registry, self._engines() if self._engines else ())
            return self._embedder

    def ingestor(self, chunking: tuple[int, int] | None = None) -> Ingestor:
        """The ingest pipeline; ``chunking`` (chunk tokens, overlap) other than ``[corpus]``'s is a collection's
        own (``[collections.NAME]``), and builds a version of its own."""
        embedder = self.embedder()
        cfg = self.settings.corpus
        chunking = chunking or (cfg.chunk_tokens, cfg.chunk_overlap)
        with self._lock:
            if chunking not in self._ingestors:
                from aifab.corpus.chunking import StructuredChunker
                from aifab.corpus.loaders import load_document

                chunker = StructuredChunker.for_embedder(embedder, chunk_tokens=chunking[0], overlap_tokens=chunking[1])
                self._ingestors[chunking] = Ingestor(
                    self.collections, self.jobs, embedder, chunker,
                    lambda data, source: load_document(data, source, max_bytes=cfg.max_file_bytes),
                    max_file_bytes=cfg.max_file_bytes, flush_chunks=cfg.embed_batch * 4,
                    token_vectors=cfg.token_vectors,
                )
            return self._ingestors[chunking]

    def ingest_paths(self, collection: str, paths: Sequence[Path], *, acl: Iterable[str] = (),
                     prune: bool = False, on_progress: ProgressFn | None = None,
                     job_id: str | None = None, chunking: tuple[int, int] | None = None) -> IngestReport:
        sources, errors = discover(paths)
        return self.ingest(collection, sources, acl=acl, errors=errors,
                           prune_roots=[p for p in paths if Path(p).exists()] if prune else None,
                           on_progress=on_progress, job_id=job_id, chunking=chunking)

    def ingest(self, collection: str, sources: Sequence[Source], *, chunking: tuple[int, int] | None = None,
               **kwargs) -> IngestReport:  # type: ignore[no-untyped-def]
        self.collections.create(collection, exist_ok=True)  # validates the name before the model loads
        return self.ingestor(chunking).run(collection, sources, **kwargs)

    # -- failures and recovery ------------------------------------------------------------------------

    def fail(self, job_id: str, collection: str, sources: Sequence[Source], reason: str,
             errors: Sequence[dict[str, str]] = ()) -> None:
        """Mark an upload job failed with ``reason`` and remove its uploads that no document came from:
        the client was told the upload failed, so a later rebuild must not bring them in."""
        try:
            summary = dict(self.jobs.get(job_id)["summary"] or {})  # what the ingest got to, if it started
        except NotFound:  # the collection (and its jobs) was deleted meanwhile
            summary = {}
        summary.setdefault("errors", list(errors))
        self.jobs.finish(job_id, "failed", {**summary, "error": reason})
        self.remove_unindexed(collection, sources)

    def remove_unindexed(self, collection: str, sources: Sequence[Source]) -> list[str]:
        """Delete the upload files among ``sources`` that no version of ``collection`` holds a document
        for; returns their names."""
        ids = {s.document_id for s in sources}
        with self.registry.db.session() as s:
            indexed = set(s.scalars(select(DocumentRow.document_id).where(
                DocumentRow.collection == collection, DocumentRow.document_id.in_(ids))))
        removed = []
        for src in sources:
            if src.document_id not in indexed and src.path.exists():
                src.path.unlink()
                removed.append(src.path.name)
        return removed

    def recover(self, resume: Resume | None = None) -> list[dict[str, Any]]:
        """At start-up: the ingest jobs whose owner is gone become 'interrupted' and are resumed (an
        upload job whose files are still here, when ``resume`` is given: a new job ingests them) or
        cleaned up (the uploads no document came from are removed; a CLI ingest is simply run again).
        Each job's ``recovery`` says which; returns them."""
        done = []
        for row in self.jobs.recover():
            request = row.request or {}
            names = request.get("files", []) if request.get("kind") == "upload" else []
            sources = [upload_source(self.uploads_dir, row.collection, n) for n in names]
            present = [s for s in sources if s.path.exists()]
            if resume is not None and present:
                acl, errors = list(request.get("acl", [])), list(request.get("errors", []))
                new_id = self.jobs.queue(row.collection, request={**request, "files": [s.path.name for s in present],
                                                                  "resumes": row.id})
                recovery: dict[str, Any] = {"action": "resumed", "job": new_id}
                self.jobs.set_recovery(row.id, recovery)
                resume(new_id, row.collection, present, acl, errors)
            else:
                recovery = {"action": "cleaned_up", "removed_uploads": self.remove_unindexed(row.collection, sources)}
                self.jobs.set_recovery(row.id, recovery)
            done.append({"id": row.id, "collection": row.collection, "recovery": recovery})
        return done
