"""``MemoryStore``: a brute-force, in-memory ``VectorStore`` for unit tests (exact search, BM25 in Python).

Several instances over one ``MemoryStorage`` see the same data, which stands in for "reopen" in tests.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from aifab.errors import Conflict, InvalidRequest, NotFound
from aifab.stores.lexical import query_terms, words
from aifab.stores.protocol import ChunkRecord, Filter, Hit


@dataclass
class MemoryStorage:
    dims: dict[str, int] = field(default_factory=dict)
    rows: dict[str, dict[str, ChunkRecord]] = field(default_factory=dict)


class MemoryStore:
    def __init__(self, storage: MemoryStorage | None = None) -> None:
        self.storage = storage or MemoryStorage()

    def _ns(self, namespace: str) -> dict[str, ChunkRecord]:
        if namespace not in self.storage.rows:
            raise NotFound(f"no namespace '{namespace}'")
        return self.storage.rows[namespace]

    def create_namespace(self, namespace: str, dimensions: int) -> None:
        have = self.storage.dims.get(namespace)
        if have is not None and have != dimensions:
            raise Conflict(f"namespace '{namespace}' has {have} dimensions, not {dimensions}")
        self.storage.dims[namespace] = dimensions
        self.storage.rows.setdefault(namespace, {})

    def drop_namespace(self, namespace: str) -> None:
        self.storage.dims.pop(namespace, None)
        self.storage.rows.pop(namespace, None)

    def namespaces(self) -> dict[str, int]:
        return dict(self.storage.dims)

    def upsert(self, namespace: str, records: Sequence[ChunkRecord]) -> None:
        rows, dim = self._ns(namespace), self.storage.dims[namespace]
        for r in records:
            if r.vector is None or np.asarray(r.vector).shape != (dim,):
                raise InvalidRequest(f"chunk '{r.id}' needs a vector of {dim} dimensions")
        for r in records:
            v = np.asarray(r.vector, dtype=np.float32)
            rows[r.id] = ChunkRecord(r.id, r.document_id, r.text, v / (np.linalg.norm(v) or 1.0),
                                     copy.deepcopy(r.metadata), tuple(r.acl), r.rerank)

    def delete(self, namespace: str, ids: Iterable[str]) -> int:
        rows = self._ns(namespace)
        return sum(rows.pop(i, None) is not None for i in set(ids))

    def fetch(
        self, namespace: str, ids: Sequence[str], *, vectors: bool = False, rerank: bool = False
    ) -> list[ChunkRecord]:
        rows = self._ns(namespace)
        return [self._out(rows[i], vectors, rerank) for i in ids if i in rows]

    def document_chunks(self, namespace: str, document_id: str) -> set[str]:
        return {r.id for r in self._ns(namespace).values() if r.document_id == document_id}

    def query(self, namespace: str, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        rows = [r for r in self._ns(namespace).values() if filter is None or filter.allows(r)]
        q = np.asarray(vector, dtype=np.float32)
        q = q / (np.linalg.norm(q) or 1.0)
        scored = sorted(((float(r.vector @ q), r) for r in rows if r.vector is not None), key=lambda t: -t[0])
        return [Hit(r.id, s, self._out(r, False)) for s, r in scored[:k]]

    def lexical(self, namespace: str, text: str, k: int, filter: Filter | None = None) -> list[Hit]:
        rows = list(self._ns(namespace).values())
        terms = set(query_terms(text))
        if not terms or not rows:
            return []
        docs = [(r, Counter(words(r.text))) for r in rows]
        avg = sum(sum(c.values()) for _, c in docs) / len(docs)
        df = Counter(t for _, c in docs for t in terms if t in c)
        out = []
        for r, c in docs:
            if filter is not None and not filter.allows(r):
                continue
            length, score = sum(c.values()), 0.0
            for t in terms:
                if c[t]:
                    idf = math.log(1 + (len(docs) - df[t] + 0.5) / (df[t] + 0.5))
                    score += idf * c[t] * 2.2 / (c[t] + 1.2 * (0.25 + 0.75 * length / avg))
            if score > 0:
                out.append(Hit(r.id, score, self._out(r, False)))
        return sorted(out, key=lambda h: -h.score)[:k]

    def count(self, namespace: str) -> int:
        return len(self._ns(namespace))

    def close(self) -> None:
        return None

    @staticmethod
    def _out(r: ChunkRecord, vectors: bool, rerank: bool = False) -> ChunkRecord:
        return ChunkRecord(r.id, r.document_id, r.text, r.vector.copy() if vectors and r.vector is not None else None,
                           copy.deepcopy(r.metadata), r.acl, r.rerank if rerank else None)
