"""The stored form of a chunk's token vectors: what the ``maxsim`` reranker reads instead of re-encoding.

A chunk's contextual token vectors (float32, rows L2-normalised) are kept as int8 with one float16 scale
per token (``round(x / max|row| * 127)``): 4× smaller than float32, and the reconstruction error
(≤ 1/254 of each row's largest component) moves MaxSim scores by about 1e-3, far below the gaps that
decide a ranking (``tests/rag/test_rerank.py`` checks the order against re-encoding). Layout,
little-endian: ``uint16 tokens, uint16 dims``, then ``tokens × float16`` scales, then
``tokens × dims × int8``. A 256-token chunk of a 384-dimension model: 4 + 512 + 98,304 bytes.
"""

from __future__ import annotations

import numpy as np

_HEADER = np.dtype([("tokens", "<u2"), ("dims", "<u2")])


def pack(vectors: np.ndarray) -> bytes:
    """float32 (tokens, dims) → bytes (see the module docstring)."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2 or v.shape[0] >= 1 << 16 or v.shape[1] >= 1 << 16:
        raise ValueError(f"token vectors must be a (tokens, dims) matrix below 65536 each, got {v.shape}")
    peak = np.abs(v).max(axis=1) if v.size else np.zeros(len(v), np.float32)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float16)
    q = np.clip(np.rint(v / scale.astype(np.float32)[:, None]), -127, 127).astype(np.int8)
    header = np.array([(v.shape[0], v.shape[1])], dtype=_HEADER)
    return header.tobytes() + scale.astype("<f2").tobytes() + q.tobytes()


def unpack(data: bytes) -> np.ndarray:
    """bytes → float32 (tokens, dims), rows as stored (about unit length)."""
    header = np.frombuffer(data, dtype=_HEADER, count=1)[0]
    n, dims = int(header["tokens"]), int(header["dims"])
    at = _HEADER.itemsize
    scale = np.frombuffer(data, dtype="<f2", count=n, offset=at).astype(np.float32)
    q = np.frombuffer(data, dtype=np.int8, count=n * dims, offset=at + 2 * n).reshape(n, dims)
    return q.astype(np.float32) * scale[:, None]
