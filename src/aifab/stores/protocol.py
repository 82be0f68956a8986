"""The ``VectorStore`` seam: chunks with their vectors, text, metadata and ACL tags, searchable by vector
(ANN) and by words (BM25 / full-text), grouped in namespaces (one per collection version).

Semantics every backend shares (``aifab.testing.StoreConformance`` checks them):

- ``upsert`` is idempotent by ``id``: writing the same record twice leaves one record; a record with an
  existing id replaces it (vector, text, metadata, ACL). Once ``upsert`` returns, the records survive a
  crash of the process.
- Vectors are compared by cosine similarity; ``Hit.score`` is higher for closer vectors (1.0 = same
  direction). Lexical scores are also higher-is-better, comparable only within one result list.
- ``Filter.acl``: ``None`` means no ACL check (a trusted, unscoped caller). A set of tags means the
  caller holds those tags: a chunk is visible when it has no ACL tags (public) or shares at least one tag
  with the caller. An empty set therefore sees public chunks only.
- ``Filter.where``: equality on ``document_id`` or on a metadata key; a list value means "any of".
- A query never returns more than ``k`` hits, never a deleted record, and is sorted by score, best first.
- Namespace names match ``NAMESPACE_PATTERN``; backends map them to their own identifiers safely.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

Scalar = str | int | float | bool
NAMESPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$"


@dataclass
class ChunkRecord:
    """One stored chunk. ``vector`` is float32 of the namespace's dimensions (None when not fetched).
    ``rerank`` is opaque data a reranker keeps with the chunk (its token vectors, ``aifab.stores.tokens``):
    stored, replaced and deleted with the record, returned only by ``fetch(..., rerank=True)``."""

    id: str
    document_id: str
    text: str
    vector: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    acl: tuple[str, ...] = ()
    rerank: bytes | None = field(default=None, repr=False)


@dataclass
class Hit:
    id: str
    score: float
    record: ChunkRecord


@dataclass(frozen=True)
class Filter:
    acl: frozenset[str] | None = None
    where: Mapping[str, Scalar | Sequence[Scalar]] = field(default_factory=dict)

    def allows_acl(self, tags: Sequence[str]) -> bool:
        """Whether a chunk (or a document) with these ACL tags is visible: public, or a tag in common."""
        return self.acl is None or not tags or bool(set(tags) & self.acl)

    def allows(self, record: ChunkRecord) -> bool:
        """The reference semantics, for backends that post-filter and for tests."""
        if not self.allows_acl(record.acl):
            return False
        for key, want in self.where.items():
            have = record.document_id if key == "document_id" else record.metadata.get(key)
            options = want if isinstance(want, list | tuple | set | frozenset) else (want,)
            if have not in options:
                return False
        return True


@runtime_checkable
class VectorStore(Protocol):
    """Namespaced chunk storage with dense and lexical search."""

    def create_namespace(self, namespace: str, dimensions: int) -> None:
        """Create it (no-op when it exists with the same dimensions; ``Conflict`` when they differ)."""

    def drop_namespace(self, namespace: str) -> None:
        """Remove it and everything in it (no-op when absent)."""

    def namespaces(self) -> dict[str, int]:
        """Existing namespaces and their dimensions."""

    def upsert(self, namespace: str, records: Sequence[ChunkRecord]) -> None:
        """Insert or replace; every record must carry a vector of the namespace's dimensions."""

    def delete(self, namespace: str, ids: Iterable[str]) -> int:
        """Delete by id; unknown ids are ignored. Returns how many were deleted."""

    def fetch(
        self, namespace: str, ids: Sequence[str], *, vectors: bool = False, rerank: bool = False
    ) -> list[ChunkRecord]:
        """The records that exist among ``ids`` (any order), with vectors and reranker data when asked."""

    def document_chunks(self, namespace: str, document_id: str) -> set[str]:
        """Ids of the chunks stored for one document."""

    def query(self, namespace: str, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        """Approximate nearest neighbours by cosine similarity."""

    def lexical(self, namespace: str, text: str, k: int, filter: Filter | None = None) -> list[Hit]:
        """Best matches for the words of ``text`` (BM25 or the backend's full-text ranking)."""

    def count(self, namespace: str) -> int: ...

    def close(self) -> None: ...
