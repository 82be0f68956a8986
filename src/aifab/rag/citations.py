"""Citations: the ``[n]`` markers of an answer mapped back to the passages they name."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aifab.rag.protocol import Passage

_MARKER = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")


def cited_numbers(answer: str) -> list[int]:
    """The source numbers an answer cites, in order of first appearance: ``[1]``, ``[2][3]``, ``[1, 2]``."""
    seen: dict[int, None] = {}
    for group in _MARKER.findall(answer):
        for part in re.split(r"[,;]", group):
            seen.setdefault(int(part), None)
    return list(seen)


def strip_markers(text: str) -> str:
    """The text without its citation markers."""
    return _MARKER.sub(" ", text)


def citations(passages: Sequence[Passage], answer: str) -> list[dict[str, Any]]:
    """One entry per source given to the model, numbered as in the prompt, with ``cited`` telling whether
    the answer refers to it. A marker naming no source is ignored (the model invented it)."""
    cited = set(cited_numbers(answer))
    out = []
    for number, p in enumerate(passages, start=1):
        out.append({
            "index": number,
            "cited": number in cited,
            "chunk_id": p.id,
            "document_id": p.document_id,
            **p.place(),
            "similarity": round(p.similarity, 4),
            "text": p.text,
        })
    return out
