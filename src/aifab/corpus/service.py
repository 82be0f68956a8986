"""The corpus block wired from settings: collections, jobs and the ingest pipeline.

The embedding model is loaded on the first ingest, not at start-up: listing collections or deleting a
document should not wait for a model."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from aifab.config import Settings
from aifab.corpus.collections import Collections
from aifab.corpus.ingest import Ingestor, IngestReport, ProgressFn
from aifab.corpus.jobs import Jobs
from aifab.corpus.protocol import Embedder
from aifab.corpus.sources import Source, discover
from aifab.registry import Registry
from aifab.stores.protocol import VectorStore


class Corpus:
    def __init__(self, settings: Settings, registry: Registry, store: VectorStore,
                 embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.uploads_dir = settings.data_dir / "uploads"
        self.registry = registry
        self.store = store
        self.collections = Collections(registry.db, store)
        self.jobs = Jobs(registry.db)
        self._embedder = embedder
        self._ingestor: Ingestor | None = None
        self._lock = threading.Lock()

    def embedder(self) -> Embedder:
        """The configured embedding model (loaded on first use): ingest and queries share it."""
        with self._lock:
            if self._embedder is None:
                from aifab.corpus.embedders import load_embedder

                self._embedder = load_embedder(self.settings, self.registry)
            return self._embedder

    def ingestor(self) -> Ingestor:
        embedder = self.embedder()
        with self._lock:
            if self._ingestor is None:
                from aifab.corpus.chunking import StructuredChunker
                from aifab.corpus.loaders import load_document

                cfg = self.settings.corpus
                chunker = StructuredChunker.for_embedder(
                    embedder, chunk_tokens=cfg.chunk_tokens, overlap_tokens=cfg.chunk_overlap
                )
                self._ingestor = Ingestor(
                    self.collections, self.jobs, embedder, chunker,
                    lambda data, source: load_document(data, source, max_bytes=cfg.max_file_bytes),
                    max_file_bytes=cfg.max_file_bytes, flush_chunks=cfg.embed_batch * 4,
                )
            return self._ingestor

    def ingest_paths(self, collection: str, paths: Sequence[Path], *, acl: Iterable[str] = (),
                     prune: bool = False, on_progress: ProgressFn | None = None) -> IngestReport:
        sources, errors = discover(paths)
        return self.ingest(collection, sources, acl=acl, errors=errors,
                           prune_roots=[p for p in paths if Path(p).exists()] if prune else None,
                           on_progress=on_progress)

    def ingest(self, collection: str, sources: Sequence[Source], **kwargs) -> IngestReport:  # type: ignore[no-untyped-def]
        self.collections.create(collection, exist_ok=True)  # validates the name before the model loads
        return self.ingestor().run(collection, sources, **kwargs)
