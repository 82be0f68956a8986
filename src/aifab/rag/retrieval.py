"""Hybrid retrieval: dense and lexical search over one collection version, fused by reciprocal rank.

    score(chunk) = sum over searches s that found it of  weight_s / (rrf_k + rank_s)

RRF needs no score calibration between cosine similarities and BM25 (Cormack et al., 2009), which is
why it is the default fusion of most hybrid engines. After fusion the top candidates get their exact
cosine similarity to the query (vectors fetched from the store), which drives the optional MMR
diversity and the "don't know" threshold; an optional ``Reranker`` re-orders them last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from aifab.config import RetrievalSettings
from aifab.errors import InvalidRequest
from aifab.rag.protocol import Passage, Reranker
from aifab.stores.protocol import Filter, Hit, VectorStore

EmbedQuery = Callable[[str], np.ndarray]  # one query -> one L2-normalised float32 vector


class Retriever:
    def __init__(
        self, store: VectorStore, embed_query: EmbedQuery,
        rerankers: Callable[[str], Reranker | None] | None = None,
    ) -> None:
        """``rerankers`` returns the reranker a ``RetrievalSettings.reranker`` name stands for (None: skip)."""
        self.store = store
        self.embed_query = embed_query
        self.rerankers = rerankers

    def search(
        self, namespace: str, query: str, settings: RetrievalSettings, filter: Filter | None = None,
        *, top_k: int | None = None,
    ) -> list[Passage]:
        """The ``top_k`` best passages for ``query``, best first."""
        if not query.strip():
            raise InvalidRequest("the query is empty", param="query")
        k = top_k or settings.top_k
        depth = max(settings.candidates, k)
        vector = self.embed_query(query)  # also for lexical mode: similarity drives the don't-know threshold
        searches: dict[str, list[Hit]] = {}
        if settings.mode in ("hybrid", "dense") and settings.dense_weight > 0:
            searches["dense"] = self.store.query(namespace, vector, depth, filter)
        if settings.mode in ("hybrid", "lexical") and settings.lexical_weight > 0:
            searches["lexical"] = self.store.lexical(namespace, query, depth, filter)
        weights = {"dense": settings.dense_weight, "lexical": settings.lexical_weight}
        fused = fuse(searches, weights, settings.rrf_k)
        reranker = None
        if settings.reranker != "none" and self.rerankers is not None:
            reranker = self.rerankers(settings.reranker)
        size = max(k, 3 * k if settings.mmr else 0, settings.rerank_candidates if reranker else 0)
        passages = self._with_similarity(namespace, fused[:size], vector, vectors=settings.mmr)
        if settings.mmr:
            passages = mmr(passages, settings.mmr_lambda, len(passages))
        if reranker is not None:
            candidates = passages[: settings.rerank_candidates]
            if reranker.uses_stored:
                candidates = self._with_stored(namespace, candidates)
            passages = reranker.rerank(query, candidates)
        return passages[:k]

    def _with_stored(self, namespace: str, passages: list[Passage]) -> list[Passage]:
        """The passages with the data their chunks stored for the reranker at ingest (one fetch); one
        deleted since the search is left out."""
        stored = {r.id: r.rerank for r in self.store.fetch(namespace, [p.id for p in passages], rerank=True)}
        for p in passages:
            p.stored = stored.get(p.id)
        return [p for p in passages if p.id in stored]

    def _with_similarity(
        self, namespace: str, pool: list[Passage], vector: np.ndarray, *, vectors: bool
    ) -> list[Passage]:
        """Exact cosine similarity of each pooled candidate: the dense search's own score where it found
        the passage, else computed from the stored vector (fetched for all when ``vectors``, for MMR)."""
        wanted = {p.id for p in pool if vectors or "dense" not in p.ranks}
        if not wanted:
            return pool
        records = {r.id: r for r in self.store.fetch(namespace, sorted(wanted), vectors=True)}
        out = []
        for p in pool:
            record = records.get(p.id)
            if record is not None and record.vector is not None:
                p.similarity = float(np.dot(record.vector, vector))
                p.vector = record.vector
            elif p.id in wanted:  # deleted between search and fetch
                continue
            out.append(p)
        return out


def fuse(searches: dict[str, list[Hit]], weights: dict[str, float], rrf_k: int) -> list[Passage]:
    """Reciprocal rank fusion of several ranked hit lists into one list of passages, best first."""
    by_id: dict[str, Passage] = {}
    for name, hits in searches.items():
        w = weights.get(name, 1.0)
        for rank, hit in enumerate(hits, start=1):
            p = by_id.get(hit.id)
            if p is None:
                r = hit.record
                p = by_id[hit.id] = Passage(hit.id, r.document_id, r.text, 0.0, 0.0, dict(r.metadata))
            if name == "dense":
                p.similarity = hit.score  # the store's cosine similarity: Hit.score of a vector query
            p.score += w / (rrf_k + rank)
            p.ranks[name] = rank
    # ties (equal fused score) go to the better best rank, then to the id, so results are deterministic
    return sorted(by_id.values(), key=lambda p: (-p.score, min(p.ranks.values()), p.id))


def mmr(passages: Sequence[Passage], lam: float, k: int) -> list[Passage]:
    """Maximal marginal relevance (Carbonell & Goldstein, 1998) over the passages' vectors:
    repeatedly take the passage maximising  lam * sim(query) - (1 - lam) * max sim(already taken)."""
    left = list(passages)
    if len(left) <= 1:
        return left
    vectors = np.stack([p.vector for p in left if p.vector is not None])
    if len(vectors) != len(left):
        raise ValueError("MMR needs every passage's vector (fetch them with vectors=True)")
    relevance = np.array([p.similarity for p in left])
    chosen: list[int] = []
    redundancy = np.full(len(left), -np.inf)
    while len(chosen) < min(k, len(left)):
        gain = lam * relevance - (1 - lam) * np.where(np.isinf(redundancy), 0.0, redundancy)
        gain[chosen] = -np.inf
        best = int(np.argmax(gain))
        chosen.append(best)
        redundancy = np.maximum(redundancy, vectors @ vectors[best])
    taken = set(chosen)
    return [left[i] for i in chosen] + [p for i, p in enumerate(left) if i not in taken]
