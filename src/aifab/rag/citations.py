"""Citations: the ``[n]`` markers of an answer mapped back to the passages they name, and, for sentences
without a marker, the passages attribution finds they rest on (``attribution``). Each citation says how
it was found: ``marker`` (the model wrote it) or ``attributed`` (found after generation)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aifab.rag.attribution import Attributor, sentence_spans
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


def citations(
    passages: Sequence[Passage], answer: str, attributor: Attributor | None = None
) -> list[dict[str, Any]]:
    """One entry per source given to the model, numbered as in the prompt. ``cited``: the answer rests on
    it; ``found``: ``marker`` (a ``[n]`` in the answer), ``attributed`` (``attributor`` matched one of the
    answer's unmarked sentences to it) or None; ``answer_spans``: the (start, end) offsets in the answer
    of the sentences that cite it. A marker naming no source is ignored (the model invented it)."""
    spans = sentence_spans(answer)
    by_marker: dict[int, list[tuple[int, int]]] = {}
    unmarked = []
    for span in spans:
        numbers = [n for n in cited_numbers(answer[span[0] : span[1]]) if 1 <= n <= len(passages)]
        for n in numbers:
            by_marker.setdefault(n, []).append(span)
        if not numbers:
            unmarked.append(span)
    by_attribution: dict[int, list[tuple[int, int]]] = {}
    if attributor is not None and unmarked and passages:
        sources = attributor.attribute([strip_markers(answer[a:b]) for a, b in unmarked], passages)
        for span, picked in zip(unmarked, sources, strict=True):
            for k in picked:
                by_attribution.setdefault(k + 1, []).append(span)
    out = []
    for number, p in enumerate(passages, start=1):
        found = "marker" if number in by_marker else "attributed" if number in by_attribution else None
        out.append({
            "index": number,
            "cited": found is not None,
            "found": found,
            "answer_spans": sorted(by_marker.get(number, []) + by_attribution.get(number, [])),
            "chunk_id": p.id,
            "document_id": p.document_id,
            **p.place(),
            "similarity": round(p.similarity, 4),
            "text": p.text,
        })
    return out
