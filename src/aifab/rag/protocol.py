"""The RAG block's plain data and its one seam, ``Reranker``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class Passage:
    """One retrieved chunk with where it came from and how it scored.

    ``score`` orders the list (fused RRF score, or the reranker's); ``similarity`` is the exact cosine
    similarity to the query (comparable across queries, used for the don't-know threshold);
    ``ranks`` holds its 1-based rank in each search that found it (``dense``, ``lexical``)."""

    id: str
    document_id: str
    text: str
    score: float
    similarity: float
    metadata: dict[str, Any] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    vector: np.ndarray | None = field(default=None, repr=False, compare=False)
    stored: bytes | None = field(default=None, repr=False, compare=False)  # the reranker's data from ingest

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))

    def place(self) -> dict[str, Any]:
        """Where the passage is: source path, title, section headings, page and character offsets (``spans``:
        the exact places of the sentences a prompt carried, when context selection cut it down)."""
        m = self.metadata
        return {"source": m.get("source"), "title": m.get("title"), "section": m.get("section") or [],
                "page": m.get("page"), "start": m.get("start"), "end": m.get("end"),
                "offsets": m.get("offsets", "extracted"), **({"spans": m["spans"]} if m.get("spans") else {})}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "document_id": self.document_id,
            "score": round(self.score, 6),
            "similarity": round(self.similarity, 6),
            "ranks": self.ranks,
            **self.place(),
            "text": self.text,
        }


@runtime_checkable
class Reranker(Protocol):
    """Re-orders candidate passages for a query, best first; sets each passage's ``score``.

    Returns the same passages (none dropped or added), sorted by the new score, ties by id; an empty list
    for none. ``uses_stored``: it reads ``Passage.stored``, the data kept with each chunk at ingest, which
    the retriever then fetches for the candidates. ``aifab.testing.RerankerConformance`` checks this."""

    name: str
    uses_stored: bool

    def rerank(self, query: str, passages: Sequence[Passage]) -> list[Passage]: ...
