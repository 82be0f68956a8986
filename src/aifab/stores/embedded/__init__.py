"""The embedded default vector store: SQLite (records, FTS5/BM25, filters) + a faiss HNSW graph."""

from aifab.stores.embedded.store import EmbeddedStore

__all__ = ["EmbeddedStore"]
