"""PostgreSQL + pgvector backend of the ``VectorStore`` seam (needs ``pip install 'aifab[pg]'``)."""

from aifab.stores.pgvector.store import PgVectorStore

__all__ = ["PgVectorStore"]
