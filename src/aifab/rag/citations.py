"""Citations: the ``[n]`` markers of an answer mapped back to the passages they name, and, for sentences
without a marker, the passages attribution finds they rest on (``attribution``). Each citation says how
it was found: ``marker`` (the model wrote it) or ``attributed`` (found after generation)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aifab.rag.attribution import Attributor, Sources, sentence_spans
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
    return _listed(passages, by_marker, by_attribution)


def _listed(
    passages: Sequence[Passage], by_marker: dict[int, list[tuple[int, int]]],
    by_attribution: dict[int, list[tuple[int, int]]],
) -> list[dict[str, Any]]:
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


class StreamCiter:
    """Cites a streamed answer sentence by sentence: ``feed`` the text as it comes and get back the spans of
    the sentences it completed (a sentence is complete once the next one starts, or at ``finish``); ``cite``
    one span to get its sources, by marker, else by attribution against passages embedded once."""

    def __init__(self, passages: Sequence[Passage], attributor: Attributor | None) -> None:
        self.passages = passages
        self.attributor = attributor
        self.sources: Sources | None = None  # embedded at the first sentence that needs attribution
        self.text = ""
        self.done = 0  # sentences handed out so far
        self.finished = False
        self._cited: dict[str, dict[int, list[tuple[int, int]]]] = {"marker": {}, "attributed": {}}

    def feed(self, text: str) -> list[tuple[int, int]]:
        self.text += text
        spans = sentence_spans(self.text)[:-1]  # the last may still grow
        return self._new(spans)

    def finish(self) -> list[tuple[int, int]]:
        self.finished = True
        return self._new(sentence_spans(self.text))

    def citations(self) -> list[dict[str, Any]]:
        """The whole answer's list, as :func:`citations` gives it, from the sentences already cited one by
        one (every sentence ``finish`` handed out must have been cited): nothing is embedded again."""
        return _listed(self.passages, self._cited["marker"], self._cited["attributed"])

    def _new(self, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        out = spans[self.done :]
        self.done = max(self.done, len(spans))
        return out

    def prepare(self) -> Sources | None:
        """The passages' sentences, embedded once (blocking), at the first sentence to attribute."""
        if self.sources is None and self.attributor is not None and self.passages:
            self.sources = self.attributor.against(self.passages)
        return self.sources

    def cite(self, span: tuple[int, int]) -> dict[str, Any] | None:
        """``{"answer_span", "sources", "found"}`` for one sentence, or None when it cites nothing. Blocking
        (an embedding call when attributing): run it off the event loop."""
        sentence = self.text[span[0] : span[1]]
        numbers = [n for n in cited_numbers(sentence) if 1 <= n <= len(self.passages)]
        found = "marker"
        sources = self.prepare() if not numbers else None
        if sources is not None:
            numbers, found = [k + 1 for k in sources.attribute([strip_markers(sentence)])[0]], "attributed"
        if not numbers:
            return None
        for n in numbers:
            self._cited[found].setdefault(n, []).append(span)
        return {"answer_span": list(span), "sources": numbers, "found": found}
