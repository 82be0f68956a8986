"""``FakeEmbedder``: a deterministic, model-free ``Embedder`` for unit tests.

Vectors are hashed bags of words (so texts sharing words are close, like a real model, only cruder);
tokens are whitespace-separated words plus two, like a model's [CLS]/[SEP]. ``calls`` records each
``embed`` batch so tests can assert what was (not) embedded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np


class FakeEmbedder:
    def __init__(self, dimensions: int = 64, *, name: str = "fake-embedder", max_tokens: int = 256) -> None:
        self.name = name
        self.dimensions = dimensions
        self.max_tokens = max_tokens
        self.calls: list[list[str]] = []

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) + 2 for t in texts]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row] += self._word(word)
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else np.eye(1, self.dimensions, 0, dtype=np.float32)
        return out

    def token_vectors(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One unit vector per word (hashed), so late interaction matches shared words, as a real model's
        token vectors match related tokens."""
        out = []
        for text in texts:
            # words without their punctuation ("Rotterdam." matches "Rotterdam"), as a real tokenizer splits them
            rows = [self._word(w) for w in re.findall(r"\w+", text.lower())] or [np.zeros(self.dimensions, np.float32)]
            out.append(np.stack([r / (np.linalg.norm(r) or 1.0) for r in rows]).astype(np.float32))
        return out

    def token_spans(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The places of the words ``token_vectors`` gives rows for."""
        return [np.array([m.span() for m in re.finditer(r"\w+", t.lower())], dtype=np.int64).reshape(-1, 2)
                for t in texts]

    def embed_with_tokens(self, texts: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        return self.embed(texts), self.token_vectors(texts)

    def _word(self, word: str) -> np.ndarray:
        v = np.zeros(self.dimensions, dtype=np.float32)
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        v[h % self.dimensions] = 1.0 if (h >> 32) & 1 else -1.0
        return v

    @property
    def embedded(self) -> int:
        """How many texts were embedded in all."""
        return sum(len(c) for c in self.calls)
