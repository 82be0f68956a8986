"""Rerankers, found by name (``RERANKERS``; ``rag.reranker`` in the config).

No cross-encoder ships as a package here, so the real implementations are built from the embedding model
already loaded: **MaxSim late interaction** (ColBERT, Khattab & Zaharia, 2020) over the model's
contextual token vectors. Each query token finds its best-matching passage token; the passage's score is
the mean of those cosine similarities. Unlike the pooled sentence vector it rewards passages that match
every part of the question: on the Python-glossary dev set it lifts recall@5 of hybrid retrieval by about
0.1 (``benchmarks/rag.py``).

- ``maxsim`` (default) reads the passages' token vectors stored at ingest (int8, ``aifab.stores.tokens``),
  ColBERT/PLAID's way: the query is encoded once, each passage costs a matrix product. A collection
  version ingested without them is an error that names the fix, never a silent slow path.
- ``maxsim-encode`` re-encodes the passages on every query (about 1.7 s for 20 passages on two CPU
  threads): for collections ingested with ``corpus.token_vectors = false``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from aifab.errors import ConfigError
from aifab.rag.protocol import Passage, Reranker
from aifab.stores.tokens import unpack


def maxsim(query: np.ndarray, passages: Sequence[np.ndarray]) -> list[float]:
    """Mean over query tokens of the best cosine similarity to any token of each passage; one product
    over all passages' tokens at once, then a segmented max."""
    lengths = [len(p) for p in passages]
    if not len(query) or not sum(lengths):
        return [0.0] * len(passages)
    sims = query @ np.concatenate([p for p in passages if len(p)]).T  # (query tokens, all passage tokens)
    starts = np.cumsum([0] + [n for n in lengths if n][:-1])
    best = np.maximum.reduceat(sims, starts, axis=1).mean(axis=0)
    scores, at = [], 0
    for n in lengths:
        scores.append(float(best[at]) if n else 0.0)
        at += bool(n)
    return scores


def _order(passages: Sequence[Passage], scores: Sequence[float]) -> list[Passage]:
    for p, s in zip(passages, scores, strict=True):
        p.score = s
    # ties go to the id, so that the order never depends on the order the candidates came in
    return sorted(passages, key=lambda p: (-p.score, p.id))


def _token_model(embedder: Any, name: str) -> Any:
    if not hasattr(embedder, "token_vectors"):
        raise ConfigError(
            f"the {name} reranker needs a local sentence-transformers embedder (corpus.embedder); "
            "an embedding endpoint returns pooled vectors only"
        )
    return embedder


class StoredMaxSimReranker:
    """MaxSim over the token vectors stored with each chunk at ingest (``Passage.stored``)."""

    name = "maxsim"
    uses_stored = True

    def __init__(self, embedder: Any) -> None:
        self.embedder = _token_model(embedder, self.name)

    def rerank(self, query: str, passages: Sequence[Passage]) -> list[Passage]:
        if not passages:
            return []
        missing = [p.id for p in passages if p.stored is None]
        if missing:
            raise ConfigError(
                f"{len(missing)} of the {len(passages)} passages to rerank have no stored token vectors (their "
                "collection version was ingested without them): run `aifab ingest` on the collection again, which "
                "builds a new version with them, then `aifab collections promote NAME VERSION`; or set "
                "rag.reranker = \"maxsim-encode\" (re-encodes, slow) or \"none\""
            )
        (q,) = self.embedder.token_vectors([query])
        return _order(passages, maxsim(q, [unpack(p.stored) for p in passages if p.stored is not None]))


class EncodingMaxSimReranker:
    """MaxSim re-encoding each passage per query: the slow reference the stored form is checked against."""

    name = "maxsim-encode"
    uses_stored = False

    def __init__(self, embedder: Any) -> None:
        self.embedder = _token_model(embedder, self.name)

    def rerank(self, query: str, passages: Sequence[Passage]) -> list[Passage]:
        if not passages:
            return []
        q, *docs = self.embedder.token_vectors([query, *(p.text for p in passages)])
        return _order(passages, maxsim(q, docs))


RERANKERS: Mapping[str, Callable[[Any], Reranker]] = MappingProxyType(
    {"maxsim": StoredMaxSimReranker, "maxsim-encode": EncodingMaxSimReranker}
)
"""Reranker factories by name; each takes the corpus embedder."""


def make_reranker(name: str, embedder: Any) -> Reranker:
    factory = RERANKERS.get(name)
    if factory is None:
        raise ConfigError(f"unknown reranker '{name}' (known: {', '.join(sorted(RERANKERS))}, none)")
    return factory(embedder)
