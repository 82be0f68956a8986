"""``StructuredChunker``: a document's blocks → chunks that never exceed the embedder's token budget.

How it works, and why it is fast: token counting is the only real cost, so every block is cut once into
*pieces* — sentences of prose, lines of code and tables; runs of words for a sentence over the budget,
even character runs for a single word over it — and all pieces are counted in one batch call. Blocks are
then packed greedily by additive estimates (a chunk's content tokens ≈ the sum of its pieces' — exact
for WordPiece tokenizers such as MiniLM's, whose pre-tokenizer splits at whitespace, and close for
others): a block that does not fit the rest of the current chunk starts the next one, and a block larger
than a chunk is packed piece by piece. Every final chunk is then counted exactly in one more batch call;
the rare one over the budget is re-cut (its overlap shortened first) and counted again.

The output contract:

- ``count_tokens([c.text])[0] == c.tokens <= chunk_tokens`` for every chunk (checked, not estimated);
- ``doc.text[c.start:c.end] == c.text``: a chunk is one contiguous span of the normalised text, so a
  citation points at an exact place;
- every non-whitespace character of every non-heading block is in at least one chunk;
- a heading always starts a new chunk, and ``c.section`` is the heading path, outermost first. The
  heading text itself (the run of headings on that path directly above the content) is put at the top
  of the section's first chunk when it fits next to the first piece, because a query often names the
  section; it is not repeated in the section's later chunks (their ``section`` carries it);
- with ``overlap_tokens`` > 0, a chunk starts about that many tokens before the end of the previous one
  in the same section, at a sentence boundary when one is close enough, else at a word boundary; never
  across a heading. Overlap gives way to keeping a block whole: it shrinks when the next block needs the
  room;
- ``c.page`` is the page of the block the chunk starts in.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aifab.corpus.protocol import Block, Chunk, Document, Embedder
from aifab.corpus.segmenting import (
    Span,
    even_spans,
    line_spans,
    sentence_spans,
    trimmed,
    word_runs,
    word_spans,
)
from aifab.errors import ConfigError

CountTokens = Callable[[Sequence[str]], list[int]]

ALGORITHM_VERSION = 1
RUNS_PER_CHUNK = 8  # an over-long sentence becomes runs this small, which packing fills chunks with


@dataclass(slots=True)
class _Piece:
    """A span that is never cut further while packing."""

    start: int
    end: int
    tokens: int  # content tokens: the count minus the special tokens every text gets
    page: int | None
    lead: int = 0  # content tokens of non-blank text between the previous piece and this one (markup)


@dataclass
class _Section:
    path: tuple[str, ...]
    heading: list[_Piece]  # the heading run on ``path`` right above the content; may be empty
    blocks: list[list[_Piece]] = field(default_factory=list)


@dataclass
class _Draft:
    section: tuple[str, ...]
    pieces: list[_Piece]
    prefix: int = 0  # leading pieces that repeat context (heading or overlap) and may be dropped


class StructuredChunker:
    """Structure-aware chunking by the embedder's own token count (see the module docstring).

    ``count_tokens`` is the embedder's counter: tokens the model sees, special tokens included. It is
    called with batches: two calls per document as a rule, one more per level of over-long sentence
    cutting or per round of re-cutting a chunk whose estimate was short. ``tokenizer_name`` names that
    counter in ``fingerprint()`` — pass the embedder's ``name`` (``for_embedder`` does).
    """

    def __init__(
        self,
        count_tokens: CountTokens,
        *,
        chunk_tokens: int = 256,
        overlap_tokens: int = 32,
        tokenizer_name: str = "unspecified",
    ) -> None:
        if chunk_tokens < 8:
            raise ConfigError(f"chunk_tokens must be at least 8, not {chunk_tokens}")
        if not 0 <= overlap_tokens < chunk_tokens:
            raise ConfigError(f"overlap_tokens must be in [0, chunk_tokens), not {overlap_tokens}")
        self.count_tokens = count_tokens
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.tokenizer_name = tokenizer_name

    @classmethod
    def for_embedder(cls, embedder: Embedder, *, chunk_tokens: int = 256, overlap_tokens: int = 32) -> StructuredChunker:
        """Chunks sized in ``embedder``'s tokens and capped at its ``max_tokens`` (so none is truncated),
        overlap at most half a chunk, fingerprinted with the embedder's name."""
        size = min(chunk_tokens, embedder.max_tokens)
        return cls(embedder.count_tokens, chunk_tokens=size, overlap_tokens=min(overlap_tokens, size // 2),
                   tokenizer_name=embedder.name)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "class": type(self).__name__,
            "version": ALGORITHM_VERSION,
            "chunk_tokens": self.chunk_tokens,
            "overlap_tokens": self.overlap_tokens,
            "tokenizer_name": self.tokenizer_name,
        }

    def chunk(self, document: Document) -> list[Chunk]:
        text = document.text
        blocks = _blocks(document)
        if not blocks:
            return []
        work = _Counting(self.count_tokens, text, self.chunk_tokens)
        spans = [_spans(text, b, self.chunk_tokens) for b in blocks]
        pieces = work.pieces(spans, [b.page for b in blocks], _gaps(text, blocks))
        budget = self.chunk_tokens - work.special
        drafts = [
            draft
            for section in _sections(text, blocks, pieces)
            for draft in _Packer(text, section, budget, self.overlap_tokens).run()
        ]
        return [
            Chunk(text=text[d.pieces[0].start : d.pieces[-1].end], start=d.pieces[0].start,
                  end=d.pieces[-1].end, tokens=n, section=d.section, page=d.pieces[0].page)
            for d, n in work.verified(drafts)
        ]


def _blocks(document: Document) -> list[Block]:
    """Non-blank blocks in text order; a document without blocks is one paragraph. A block nested in the
    one before (a loader that reports both a list and its items) is skipped: its text is already there."""
    blocks = document.blocks or [Block("paragraph", document.text, 0, len(document.text))]
    out: list[Block] = []
    for b in sorted(blocks, key=lambda b: b.start):
        if out and b.start < out[-1].end:
            if b.end <= out[-1].end:
                continue
            b = replace(b, start=out[-1].end, text=document.text[out[-1].end : b.end])
        if trimmed(document.text, b.start, b.end):
            out.append(b)
    return out


def _spans(text: str, block: Block, chunk_tokens: int) -> list[Span]:
    if block.kind in ("code", "table"):
        spans = line_spans(text, block.start, block.end)
    elif block.kind == "heading":
        spans = [s for s in [trimmed(text, block.start, block.end)] if s]
    else:
        spans = sentence_spans(text, block.start, block.end, items=block.kind == "list")
    return [part for s in spans for part in _precut(text, s, chunk_tokens)]


def _precut(text: str, span: Span, chunk_tokens: int) -> list[Span]:
    """A span of more words than the chunk has tokens is over it for any tokenizer that gives a word at
    least one token: cut it into runs of an eighth of a chunk before counting, rather than count it whole."""
    if span[1] - span[0] <= 2 * chunk_tokens:  # too short to hold that many words
        return [span]
    words = word_spans(text, *span)
    return word_runs(words, chunk_tokens // RUNS_PER_CHUNK) if len(words) > chunk_tokens else [span]


def _gaps(text: str, blocks: list[Block]) -> list[Span | None]:
    """The non-blank text (markup a loader kept, such as code fences) before each block."""
    return [None] + [trimmed(text, a.end, b.start) for a, b in itertools.pairwise(blocks)]


class _Counting:
    """The token counts of one document: pieces counted in batches, drafts verified in batches."""

    def __init__(self, count_tokens: CountTokens, text: str, chunk_tokens: int) -> None:
        self.count_tokens, self.text, self.chunk_tokens = count_tokens, text, chunk_tokens
        self.special = 0

    def pieces(self, spans: list[list[Span]], pages: list[int | None], gaps: list[Span | None]) -> list[list[_Piece]]:
        """Every block's spans and non-blank gaps counted in one call; spans over the budget are cut
        finer (words, then even character runs), one call per level."""
        gap_list = [g for g in gaps if g is not None]
        flat = [s for block in spans for s in block]
        counts = self._count([(0, 0), *flat, *gap_list])
        self.special = counts[0]
        gap_tokens = iter(counts[1 + len(flat):])
        known = dict(zip(flat, counts[1 : 1 + len(flat)], strict=True))
        fitted = self._fit(flat, known)
        out: list[list[_Piece]] = []
        for block, page, gap in zip(spans, pages, gaps, strict=True):
            pieces = [_Piece(a, b, n - self.special, page) for s in block for a, b, n in fitted[s]]
            if gap is not None:  # every kept block has a piece: it is not blank
                pieces[0].lead = next(gap_tokens) - self.special
            out.append(pieces)
        return out

    def _fit(self, spans: list[Span], known: dict[Span, int]) -> dict[Span, list[tuple[int, int, int]]]:
        """Each span → (start, end, count) parts within the budget. A span over it is cut into words, a
        word still over it into ``ceil(count / budget) + 1`` even runs, each level counted in one call."""
        out: dict[Span, list[tuple[int, int, int]]] = {}
        over: list[Span] = []
        for s in spans:
            if known[s] <= self.chunk_tokens:
                out[s] = [(*s, known[s])]
            else:
                over.append(s)
        if over:
            finer = {s: self._finer(s, known[s]) for s in over}
            if any(finer[s] == [s] for s in over):
                raise ConfigError(f"chunk_tokens={self.chunk_tokens} is too small: one character is over it")
            parts = [p for s in over for p in finer[s]]
            fitted = self._fit(parts, dict(zip(parts, self._count(parts), strict=True)))
            for s in over:
                out[s] = [x for p in finer[s] for x in fitted[p]]
        return out

    def _finer(self, span: Span, count: int) -> list[Span]:
        """An over-budget span cut at word boundaries into runs of about an eighth of a chunk (packing joins
        them again), so a long unpunctuated text costs a few counts rather than one per word; a single
        word is cut into even character runs."""
        words = word_spans(self.text, *span)
        if len(words) == 1:
            return even_spans(*span, math.ceil(count / self.chunk_tokens) + 1)
        return word_runs(words, len(words) * self.chunk_tokens // (RUNS_PER_CHUNK * count))

    def verified(self, drafts: list[_Draft]) -> list[tuple[_Draft, int]]:
        """Count every draft exactly (one call per round); re-cut the rare one over the budget."""
        done: list[tuple[_Draft, int | None]] = [(d, None) for d in drafts]
        while todo := [d for d, n in done if n is None]:
            counts = iter(self._count([(d.pieces[0].start, d.pieces[-1].end) for d in todo]))
            nxt: list[tuple[_Draft, int | None]] = []
            for d, n in done:
                if n is None:
                    n = next(counts)
                    if n > self.chunk_tokens:
                        nxt.extend((part, None) for part in _recut(self.text, d, n))
                        continue
                nxt.append((d, n))
            done = nxt
        return [(d, n) for d, n in done if n is not None]

    def _count(self, spans: Sequence[Span]) -> list[int]:
        return self.count_tokens([self.text[a:b] for a, b in spans]) if spans else []


def _recut(text: str, draft: _Draft, count: int) -> list[_Draft]:
    """A draft whose exact ``count`` is over the budget (an estimate was off): drop its repeated context
    piece by piece first, else halve it by pieces, else halve its one piece at a word or character."""
    if draft.prefix:  # the overlap's estimate was short: give up its first piece
        return [replace(draft, pieces=draft.pieces[1:], prefix=draft.prefix - 1)]
    pieces = draft.pieces
    if len(pieces) == 1:
        p = pieces[0]
        words = word_spans(text, p.start, p.end)
        mid = words[len(words) // 2][0] if len(words) > 1 else (p.start + p.end) // 2
        if mid <= p.start:
            raise ConfigError(f"chunk size too small: one character counts {count} tokens")
        half = p.tokens // 2
        pieces = [replace(p, end=mid, tokens=half), _Piece(mid, p.end, p.tokens - half, p.page)]
    cut = len(pieces) // 2
    return [replace(draft, pieces=pieces[:cut]), replace(draft, pieces=pieces[cut:])]


def _sections(text: str, blocks: list[Block], pieces: list[list[_Piece]]) -> list[_Section]:
    """Group blocks under their heading path; a heading closes the section before it."""
    stack: list[tuple[int, str, int]] = []  # (level, title, block index) of the open headings
    run: list[int] = []  # headings since the last content block
    sections: list[_Section] = []
    current: _Section | None = None
    for i, block in enumerate(blocks):
        if block.kind == "heading":
            level = max(block.level, 1)
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, " ".join(text[block.start : block.end].split()), i))
            run.append(i)
            current = None
        else:
            if current is None:
                on_path = {j for _, _, j in stack}
                heading: list[int] = []
                for j in reversed(run):
                    if j not in on_path:
                        break
                    heading.insert(0, j)
                current = _Section(tuple(t for _, t, _ in stack), [p for j in heading for p in pieces[j]])
                sections.append(current)
                run = []
            current.blocks.append(pieces[i])
    return sections


def _cost(pieces: Sequence[_Piece]) -> int:
    """Content tokens of a run of pieces, as one text."""
    return sum(p.tokens + p.lead for p in pieces) - pieces[0].lead if pieces else 0


class _Packer:
    """Greedy packing of one section's blocks into drafts, by additive token estimates."""

    def __init__(self, text: str, section: _Section, budget: int, overlap: int) -> None:
        self.text, self.section, self.budget, self.overlap = text, section, budget, overlap
        self.drafts: list[_Draft] = []
        self.pieces: list[_Piece] = []
        self.prefix = 0
        self.used = 0

    def run(self) -> list[_Draft]:
        for block in self.section.blocks:
            self._add(block)
        self._flush()
        return self.drafts

    def _add(self, pieces: list[_Piece]) -> None:
        """Keep ``pieces`` (a block) together: in the current draft if it fits, else in a new one if it
        fits in a chunk, else piece by piece."""
        cost = _cost(pieces)
        if len(self.pieces) > self.prefix and self.used + pieces[0].lead + cost <= self.budget:
            self._extend(pieces)
        elif cost <= self.budget:
            self._start(pieces[0].lead + cost)
            self._extend(pieces)
        else:
            for p in pieces:
                self._add([p])

    def _extend(self, pieces: list[_Piece]) -> None:
        self.used += _cost(pieces) + (pieces[0].lead if self.pieces else 0)
        self.pieces.extend(pieces)

    def _start(self, need: int) -> None:
        """Flush, then open a draft with room for ``need`` tokens after its context (heading or overlap)."""
        self._flush()
        room = self.budget - need
        context: list[_Piece] = []
        if not self.drafts:
            if self.section.heading and _cost(self.section.heading) <= room:
                context = self.section.heading
        elif self.overlap:
            own = self.drafts[-1].pieces[self.drafts[-1].prefix :]
            context = _tail(self.text, own, min(self.overlap, room))
        self.pieces, self.prefix, self.used = list(context), len(context), _cost(context)

    def _flush(self) -> None:
        if len(self.pieces) > self.prefix:
            self.drafts.append(_Draft(self.section.path, self.pieces, self.prefix))
        self.pieces, self.prefix, self.used = [], 0, 0


def _tail(text: str, pieces: list[_Piece], limit: int) -> list[_Piece]:
    """The end of ``pieces`` worth at most ~``limit`` tokens and never all of them: whole pieces
    (sentences, lines) while they fit, then, if that is under half the limit, the last words of the next
    piece back, estimated in proportion to their characters with a margin (the exact count of the chunk
    catches an underestimate)."""
    out: list[_Piece] = []
    used = 0
    i = len(pieces) - 1
    while i > 0 and used + pieces[i].tokens + (out[0].lead if out else 0) <= limit:
        used += pieces[i].tokens + (out[0].lead if out else 0)
        out.insert(0, pieces[i])
        i -= 1
    if i < 0 or used * 2 >= limit:
        return out
    p = pieces[i]
    room = limit - used - (out[0].lead if out else 0)
    per_char = p.tokens / max(1, p.end - p.start)
    for start, _ in word_spans(text, p.start, p.end)[1:]:
        estimate = math.ceil((p.end - start) * per_char * 1.1) + 1
        if estimate <= room:
            return [_Piece(start, p.end, estimate, p.page), *out]
    return out
