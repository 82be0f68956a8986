"""Where a chunker may cut: sentence, line, word and character spans over a document's text.

A span is a pair of character offsets into ``Document.text``. Sentence, line and word spans are trimmed to
visible characters, so a chunk built from them starts and ends on text, and together they cover every
non-whitespace character of the range they split. The sentence rule is deliberately simple (a regular
expression, no abbreviation list, no language model): a split point is only a preferred place to cut,
and a cut after "Dr." costs a slightly worse boundary, never lost text.
"""

from __future__ import annotations

import re

Span = tuple[int, int]

# The separator after a sentence: western terminators need whitespace after them and no lower-case
# letter next ("e.g. this" is not cut); CJK terminators need neither. A blank line always separates.
_SENTENCE_GAP = re.compile(
    r"[.!?…]+[\"'”’)\]]*(\s+)(?![a-z])|[。！？]+[\"'”’)\]]*(\s*)|(\n[ \t]*\n\s*)"
)
_LINE_GAP = re.compile(r"\n\s*")
_WORD = re.compile(r"\S+")


def trimmed(text: str, start: int, end: int) -> Span | None:
    """``(start, end)`` narrowed to its first and last visible character; None if it is blank."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def sentence_spans(text: str, start: int, end: int, *, items: bool = False) -> list[Span]:
    """Sentences of ``text[start:end]``; with ``items`` every line break also separates (list blocks)."""
    if items:
        return [s for line in _split(text, start, end, _LINE_GAP) for s in _split(text, *line, _SENTENCE_GAP)]
    return _split(text, start, end, _SENTENCE_GAP)


def line_spans(text: str, start: int, end: int) -> list[Span]:
    """Non-blank lines of ``text[start:end]``, keeping their indentation (code and tables)."""
    spans: list[Span] = []
    at = start
    while at < end:
        stop = text.find("\n", at, end)
        stop = end if stop < 0 else stop
        line_end = stop
        while line_end > at and text[line_end - 1].isspace():
            line_end -= 1
        if line_end > at:
            spans.append((at, line_end))
        at = stop + 1
    return spans


def word_spans(text: str, start: int, end: int) -> list[Span]:
    """Whitespace-separated words of ``text[start:end]``."""
    return [m.span() for m in _WORD.finditer(text, start, end)]


def word_runs(words: list[Span], per_run: int) -> list[Span]:
    """Consecutive ``words`` joined ``per_run`` at a time."""
    per_run = max(1, per_run)
    return [(words[i][0], words[min(i + per_run, len(words)) - 1][1]) for i in range(0, len(words), per_run)]


def even_spans(start: int, end: int, parts: int) -> list[Span]:
    """``[start, end)`` cut into ``parts`` runs of (nearly) equal length: the last resort for a word
    longer than a whole chunk (a URL, a base64 blob)."""
    parts = max(1, min(parts, end - start))
    bounds = [start + (end - start) * i // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _split(text: str, start: int, end: int, gaps: re.Pattern[str]) -> list[Span]:
    spans: list[Span] = []
    at = start
    for m in gaps.finditer(text, start, end):
        # the cut goes after the terminator, where the separating whitespace (a group) begins
        cut = next((m.start(g) for g in range(1, (m.lastindex or 0) + 1) if m.group(g) is not None), m.start())
        _append(spans, trimmed(text, at, cut))
        at = m.end()
    _append(spans, trimmed(text, at, end))
    return spans


def _append(spans: list[Span], span: Span | None) -> None:
    if span is not None:
        spans.append(span)
