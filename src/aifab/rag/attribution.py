"""Attribution: which source each answer sentence rests on, found after generation.

Small chat models seldom write ``[n]`` markers, which left every source uncited. After the answer is
complete, each sentence that carries no marker of its own is compared with the sentences of every
passage the model was given (RAGFlow's way: a weighted mix of embedding cosine and word overlap,
``VECTOR_WEIGHT``), and cites the passages whose best-matching sentence scores at least ``threshold``,
the best one and any within ``margin`` of it. A sentence with fewer than ``MIN_WORDS`` content words
("Yes.", "In short:") cites nothing.

Threshold: 0.6, RAGFlow's starting value (0.63) for a MiniLM-class model, not yet calibrated on labelled
answers here; an answer sentence copied from a passage scores about 1.0, one on another topic below 0.3
(``tests/rag/test_attribution.py``). Cost: one embedding call over the answer's and the passages'
sentences (about 80 short texts for five passages) once the answer is done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from aifab.corpus import segmenting
from aifab.rag.protocol import Passage
from aifab.stores.lexical import STOPWORDS, words

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> L2-normalised rows
VECTOR_WEIGHT = 0.9
MIN_WORDS = 2


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``, a line break also separating (the chunker's rule)."""
    return segmenting.sentence_spans(text, 0, len(text), items=True)


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if w not in STOPWORDS and len(w) > 1}


@dataclass
class Attributor:
    """Attributes answer sentences to passages; ``embed`` is the corpus embedder's ``embed``."""

    embed: Embed
    threshold: float = 0.6
    margin: float = 0.05

    def attribute(self, sentences: Sequence[str], passages: Sequence[Passage]) -> list[list[int]]:
        """For each sentence, the 0-based indices of the passages it rests on (best first); [] for none."""
        return self.against(passages).attribute(sentences)

    def against(self, passages: Sequence[Passage]) -> Sources:
        """The passages' sentences embedded once, for attributing answer sentences to them one at a time
        (a stream cites each sentence as it completes)."""
        pieces = [(k, passage.text[a:b]) for k, passage in enumerate(passages)
                  for a, b in sentence_spans(passage.text)]
        vectors = self.embed([text for _, text in pieces]) if pieces else np.zeros((0, 1), np.float32)
        return Sources(self, len(passages), vectors, np.array([k for k, _ in pieces], dtype=int),
                       [content_words(text) for _, text in pieces])


@dataclass
class Sources:
    """What an answer's sentences are compared with: each passage sentence's vector, passage and words."""

    attributor: Attributor
    count: int
    vectors: np.ndarray
    owner: np.ndarray
    words: list[set[str]]

    def attribute(self, sentences: Sequence[str]) -> list[list[int]]:
        wanted = [i for i, s in enumerate(sentences) if len(content_words(s)) >= MIN_WORDS]
        out: list[list[int]] = [[] for _ in sentences]
        if not wanted or not len(self.owner):
            return out
        asked = self.attributor.embed([sentences[i] for i in wanted])
        threshold, margin = self.attributor.threshold, self.attributor.margin
        for row, i in enumerate(wanted):
            mine = content_words(sentences[i])
            overlap = np.array([len(mine & have) / len(mine) for have in self.words])
            score = VECTOR_WEIGHT * (self.vectors @ asked[row]) + (1 - VECTOR_WEIGHT) * overlap
            best = np.full(self.count, -np.inf)
            np.maximum.at(best, self.owner, score)
            top = float(best.max())
            if top >= threshold:
                order = np.argsort(-best, kind="stable")
                out[i] = [int(k) for k in order if best[k] >= max(threshold, top - margin)]
        return out
