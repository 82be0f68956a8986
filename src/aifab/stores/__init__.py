"""Vector stores: the ``VectorStore`` protocol and its backends (embedded default, PostgreSQL + pgvector)."""

from aifab.stores.protocol import ChunkRecord, Filter, Hit, VectorStore

__all__ = ["ChunkRecord", "Filter", "Hit", "VectorStore"]
