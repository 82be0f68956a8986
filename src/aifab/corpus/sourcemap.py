"""``SourceMap``: offsets in ``Document.text`` → offsets in the file's decoded text.

Loaders normalise what they read (whitespace unwrapped, Markdown and reST markup reduced to its text,
headings without their ``#`` or underline), so an offset into ``Document.text`` is not a place in the
file. Rather than thread raw positions through every parser, the map is made once per document by
aligning the two texts on the words they share: the normalised text is (nearly) a subsequence of the
file's words, in order. Greedy, left to right, over word tokens:

- a word of the normalised text is matched to its next occurrence in the file when that is within
  ``WINDOW`` words (markup, a skipped directive or comment in between);
- else to a later occurrence whose next two words match too (a longer skipped region, e.g. a
  ``toctree`` or front matter), so one generated word cannot drag the alignment far ahead;
- else it stays unmatched (a word the loader made: a hyphen-joined "infor-mation", a table separator).

A span maps to the file from its first to its last matched word, so ``raw[start:end]`` begins with the
passage's first word and ends with its last, markup in between kept. Cost: one pass, a dictionary of
word positions and a bisect per word (about 20 ms for a 200 kB reST file).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass, field

_WORD = re.compile(r"\w+")
WINDOW = 64  # words of markup or skipped text tolerated between two matched words without an anchor
_ANCHOR_TRIES = 200  # later occurrences of a common word checked for a three-word anchor


@dataclass
class SourceMap:
    """Matched words, ascending in both texts: ``text_*`` in ``Document.text``, ``raw_*`` in the file."""

    text_starts: list[int] = field(default_factory=list)
    text_ends: list[int] = field(default_factory=list)
    raw_starts: list[int] = field(default_factory=list)
    raw_ends: list[int] = field(default_factory=list)
    raw_length: int = 0

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The file's span for ``Document.text[start:end]``: first to last matched word inside it; a span
        with no matched word maps to the gap between its matched neighbours."""
        i = bisect_left(self.text_starts, start)
        j = bisect_right(self.text_ends, end) - 1
        if i <= j:
            return self.raw_starts[i], self.raw_ends[j]
        lo = self.raw_ends[i - 1] if i > 0 else 0
        hi = self.raw_starts[i] if i < len(self.raw_starts) else self.raw_length
        return lo, max(lo, hi)


def align(text: str, raw: str) -> SourceMap:
    """Align ``text`` (normalised) to ``raw`` (the decoded file) word by word; see the module docstring."""
    norm = [(m.group().casefold(), m.start(), m.end()) for m in _WORD.finditer(text)]
    file = [(m.group().casefold(), m.start(), m.end()) for m in _WORD.finditer(raw)]
    where: dict[str, list[int]] = defaultdict(list)
    for k, (word, _, _) in enumerate(file):
        where[word].append(k)
    out = SourceMap(raw_length=len(raw))
    j = 0  # the next unmatched word of the file
    for i, (word, start, end) in enumerate(norm):
        match = _next_match(norm, file, where[word], i, j)
        if match is None:
            continue
        out.text_starts.append(start)
        out.text_ends.append(end)
        out.raw_starts.append(file[match][1])
        out.raw_ends.append(file[match][2])
        j = match + 1
    return out


def _next_match(
    norm: list[tuple[str, int, int]], file: list[tuple[str, int, int]], positions: list[int], i: int, j: int
) -> int | None:
    at = bisect_left(positions, j)
    if at == len(positions):
        return None
    if positions[at] - j <= WINDOW:
        return positions[at]
    following = [w for w, _, _ in norm[i + 1 : i + 3]]
    for k in positions[at : at + _ANCHOR_TRIES]:
        if [w for w, _, _ in file[k + 1 : k + 1 + len(following)]] == following:
            return k
    return None
