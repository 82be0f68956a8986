"""Context selection: the sentences of the retrieved passages that answer the question, within a token
budget, instead of five whole chunks.

Every sentence of every passage is scored by its similarity to the query (``0.9 *`` similarity ``+ 0.1 *``
the share of the query's content words it holds, as attribution scores). The similarity is
``stored_similarity`` where the passages carry the token vectors ingest stored for the reranker: MaxSim
of the query's token vectors against the sentence's own rows of its passage's vectors, so nothing is
encoded (the whole selection takes about 25 ms for five passages, against about a second to embed their
hundred-odd sentences on two cores); else ``embedded_similarity``, the cosine of each sentence's
embedding. Sentences are taken best first, each with ``neighbours`` sentences on either side so that a
pronoun keeps its referent (alone when the neighbours do not fit), until ``budget`` tokens of source
text (in the chat model's tokenizer) are used. Each passage keeps its picked sentences in their order;
runs that are not adjacent are joined with ``GAP``. A passage none of whose sentences were picked is left
out, so the model sees fewer sources.

Offsets stay exact: a selected passage's ``metadata["spans"]`` lists each run as ``[start, end]`` in the
file (ingest stored every sentence's place, ``metadata["sentences"]``), and ``start``/``end`` become
those of its first and last run. A passage stored without sentence places (ingested before they were
kept) is split here, and its runs carry offsets into its own text only (``"spans_in": "passage"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from aifab.rag.attribution import VECTOR_WEIGHT, Embed, content_words, sentence_spans
from aifab.rag.protocol import Passage
from aifab.stores.tokens import unpack

GAP = " … "


def _places(p: Passage) -> tuple[list[list[int]], bool]:
    """[start, end, file_start, file_end] per sentence, and whether the file places are real."""
    stored = p.metadata.get("sentences")
    if stored and all(len(s) == 4 and 0 <= s[0] < s[1] <= len(p.text) for s in stored):
        return [list(s) for s in stored], True
    return [[a, b, a, b] for a, b in sentence_spans(p.text)], False


Piece = tuple[int, int, int]  # (passage index, start, end) of a sentence in its passage's text
Similarity = Callable[[str, Sequence[Passage], Sequence[Piece]], np.ndarray]
"""(query, passages, their sentences) -> each sentence's similarity to the query."""


def embedded_similarity(embed: Embed) -> Similarity:
    """The cosine of each sentence's embedding with the query's: one embedding call over all sentences."""

    def similarity(query: str, passages: Sequence[Passage], pieces: Sequence[Piece]) -> np.ndarray:
        vectors = embed([query, *(passages[k].text[a:b] for k, a, b in pieces)])
        return vectors[1:] @ vectors[0]

    return similarity


def stored_similarity(
    token_vectors: Callable[[Sequence[str]], list[np.ndarray]], token_spans: Callable[[Sequence[str]], list[np.ndarray]],
) -> Similarity:
    """MaxSim (ColBERT's late interaction, as the reranker scores passages) of the query's token vectors
    against the rows of the passage's stored token vectors that fall in the sentence. ``token_spans``
    gives each passage's rows' character places (the embedder's tokenizer, as at ingest); a sentence with
    no rows (past what the embedder saw) scores 0 and is left to its word overlap. Every passage must
    carry ``stored``."""

    def similarity(query: str, passages: Sequence[Passage], pieces: Sequence[Piece]) -> np.ndarray:
        (q,) = token_vectors([query])
        spans = token_spans([p.text for p in passages])
        sims = [q @ unpack(p.stored).T for p in passages if p.stored is not None]  # (query tokens, rows)
        if len(sims) != len(passages):
            raise ValueError("stored_similarity needs the stored token vectors of every passage")
        out = np.zeros(len(pieces), dtype=np.float32)
        for n, (k, a, b) in enumerate(pieces):
            starts = spans[k][: sims[k].shape[1], 0]
            inside = (starts >= a) & (starts < b)
            if len(q) and inside.any():
                out[n] = sims[k][:, : len(starts)][:, inside].max(axis=1).mean()
        return out

    return similarity


def select_context(
    query: str, passages: Sequence[Passage], *, similarity: Similarity, count_tokens: Callable[[str], int],
    budget: int, neighbours: int = 1,
) -> list[Passage]:
    """The passages cut down to their best sentences (see the module docstring); ``budget`` <= 0 or a
    budget the whole passages fit in returns them unchanged."""
    places = [_places(p) for p in passages]
    pieces = [(k, i) for k, (sentences, _) in enumerate(places) for i in range(len(sentences))]
    spans = [(k, places[k][0][i][0], places[k][0][i][1]) for k, i in pieces]
    texts = [passages[k].text[a:b] for k, a, b in spans]
    cost = count_tokens_each(texts, count_tokens)
    if budget <= 0 or not pieces or sum(cost) <= budget:
        return list(passages)
    wanted = content_words(query)
    overlap = np.array([len(wanted & content_words(t)) / len(wanted) if wanted else 0.0 for t in texts])
    score = VECTOR_WEIGHT * similarity(query, passages, spans) + (1 - VECTOR_WEIGHT) * overlap
    index = {piece: n for n, piece in enumerate(pieces)}
    chosen: set[int] = set()
    used = 0
    for n in np.argsort(-score, kind="stable"):
        k, i = pieces[n]
        group = [index[(k, j)] for j in range(i - neighbours, i + neighbours + 1) if (k, j) in index]
        extra = sum(cost[m] for m in group if m not in chosen)
        if used + extra > budget:  # no room for its neighbours: the sentence alone, if that fits
            group = [int(n)]
            extra = 0 if n in chosen else cost[n]
            if used + extra > budget:
                continue
        chosen.update(group)
        used += extra
    out = []
    for k, p in enumerate(passages):
        picked = [i for i in range(len(places[k][0])) if index[(k, i)] in chosen]
        if picked:
            out.append(_cut(p, places[k], picked))
    return out


def count_tokens_each(texts: Sequence[str], count_tokens: Callable[[str], int]) -> list[int]:
    return [count_tokens(t) + 1 for t in texts]  # +1: the space or line break that joins them


def _cut(p: Passage, places: tuple[list[list[int]], bool], picked: list[int]) -> Passage:
    sentences, in_file = places
    runs: list[list[int]] = []  # [first sentence, last sentence]
    for i in picked:
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    parts = [p.text[sentences[a][0] : sentences[b][1]] for a, b in runs]
    spans = [[sentences[a][2], sentences[b][3]] for a, b in runs]
    metadata: dict[str, Any] = {**p.metadata, "spans": spans, "selected": True}
    metadata.pop("sentences", None)
    if in_file:
        metadata["start"], metadata["end"] = spans[0][0], spans[-1][1]
    else:
        metadata["spans_in"] = "passage"
    return replace(p, text=GAP.join(parts), metadata=metadata)
