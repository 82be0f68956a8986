"""PDF → paragraph blocks, each stamped with the (1-based) page it is on, by ``pypdf``.

A PDF has no paragraphs, only positioned lines, and ``pypdf``'s plain text has no blank lines between
them. So the lines are grouped by their positions: a paragraph ends where the vertical gap to the next
line is clearly larger than the page's usual line spacing, where the font size changes (a heading),
or where the text jumps up the page (a new column). Lines that repeat at the top or bottom of most
pages (running headers, "Page 3 of 10") are dropped; a first-line indent also starts a paragraph. Words hyphenated at a line end are rejoined by
the shared prose normalisation.

Limits: no headings, tables or reading-order repair for complex layouts; a paragraph that continues
on the next page becomes two blocks (one per page); scanned pages have no text (no OCR).
"""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aifab.corpus.loaders.build import DocumentBuilder
from aifab.corpus.loaders.normalise import normalise_line
from aifab.corpus.protocol import Document
from aifab.errors import InvalidDocument

if TYPE_CHECKING:  # imported when a PDF is loaded: pypdf takes a noticeable time to import
    import pypdf

# A gap this many times the usual line spacing separates paragraphs.
_PARAGRAPH_GAP = 1.4
_DIGITS = re.compile(r"\d+")
_BULLETS = frozenset("•◦▪▫●○■□‣⁃∙")


@dataclass
class _Line:
    text: str
    x: float  # where the line starts
    y: float  # its baseline height on the page (PDF y grows upwards)
    size: float  # font size as drawn


class PdfLoader:
    formats: tuple[str, ...] = ("pdf",)

    def load(self, data: bytes, source: str) -> Document:
        reader = _open(data)
        pages = [_page_lines(page) for page in _pages(reader)]
        _drop_running_lines(pages)
        builder = DocumentBuilder()
        for number, lines in enumerate(pages, start=1):
            builder.page = number
            for paragraph in _paragraphs(lines):
                builder.paragraph(paragraph)
        builder.page = None
        builder.title = _info_title(reader)
        builder.metadata["pages"] = len(pages)
        return builder.build(source=source, format="pdf", empty_reason="no extractable text (scanned PDF?)")


def _open(data: bytes) -> pypdf.PdfReader:
    import pypdf
    from pypdf.errors import DependencyError, FileNotDecryptedError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidDocument("encrypted PDF (it needs a password to open)")
        len(reader.pages)  # reads the page tree, where damaged files usually fail
    except InvalidDocument:
        raise
    except (DependencyError, FileNotDecryptedError) as error:
        raise InvalidDocument(f"encrypted PDF ({error})") from None
    # A damaged file makes pypdf raise almost anything (PdfReadError, ValueError, KeyError, zlib.error...);
    # each is one unreadable file, reported with pypdf's reason, never a crash of the batch.
    except Exception as error:
        raise InvalidDocument(f"corrupt PDF ({_reason(error)})") from None
    return reader


def _pages(reader: pypdf.PdfReader) -> list[pypdf.PageObject]:
    try:
        return list(reader.pages)
    except Exception as error:  # see _open
        raise InvalidDocument(f"corrupt PDF ({_reason(error)})") from None


def _page_lines(page: pypdf.PageObject) -> list[_Line]:
    """The page's lines with their positions, from pypdf's text visitor."""
    collector = _LineCollector()
    try:
        page.extract_text(visitor_text=collector.visit)
    except Exception as error:  # see _open
        raise InvalidDocument(f"corrupt PDF ({_reason(error)})") from None
    collector.close_line()
    return collector.lines


class _LineCollector:
    """Assembles pypdf's text fragments into lines placed where their first fragment is drawn."""

    def __init__(self) -> None:
        self.lines: list[_Line] = []
        self._fragments: list[str] = []
        self._place = (0.0, 0.0, 0.0)

    def visit(self, text: str, cm: list[float], tm: list[float], font: Any, size: float) -> None:
        for index, piece in enumerate(text.split("\n")):
            if index:
                self.close_line()
            if not piece:
                continue
            # The text matrix times the current transformation matrix places the fragment.
            drawn = abs(size * (tm[2] * cm[1] + tm[3] * cm[3])) or size
            if not self._fragments:
                x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
                y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
                self._place = (x, y, drawn)
            elif drawn > self._place[2]:  # the line's size is its largest text, not its bullet's
                self._place = (self._place[0], self._place[1], drawn)
            self._fragments.append(piece)

    def close_line(self) -> None:
        text = "".join(self._fragments).strip()
        if text:
            x, y, size = self._place
            self.lines.append(_Line(text, round(x, 1), round(y, 1), round(size, 1)))
        self._fragments.clear()


@dataclass(frozen=True)
class _Layout:
    """What is usual on a page: the line spacing, the left margin, the length of a full line."""

    spacing: float
    margin: float
    width: int


def _paragraphs(lines: list[_Line]) -> list[str]:
    if not lines:
        return []
    layout = _Layout(
        spacing=_line_spacing(lines),
        margin=Counter(line.x for line in lines).most_common(1)[0][0],
        width=max(len(line.text) for line in lines),
    )
    paragraphs: list[list[str]] = []
    item: float | None = None  # where the bullet of the current list item is, if in one
    for index, line in enumerate(lines):
        # A list item's wrapped lines hang indented; a line back at its bullet's place is past it.
        if not index or _breaks(lines[index - 1], line, layout) or (item is not None and line.x <= item + 1):
            paragraphs.append([])
            item = line.x if line.text[0] in _BULLETS else None
        paragraphs[-1].append(line.text)
    return ["\n".join(paragraph) for paragraph in paragraphs]


def _line_spacing(lines: list[_Line]) -> float:
    """The usual distance between two lines of one paragraph: the lower quartile of the gaps between
    consecutive lines of the same size (paragraph gaps are the larger ones)."""
    gaps = sorted(
        above.y - below.y
        for above, below in zip(lines, lines[1:], strict=False)
        if above.size == below.size and above.y > below.y
    )
    return gaps[len(gaps) // 4] if gaps else 0.0


def _breaks(previous: _Line, line: _Line, layout: _Layout) -> bool:
    """Whether ``line`` starts a new paragraph: a bullet, a new font size, a larger gap, a jump up the
    page (a new column), or a first-line indent after a short line that started at the margin."""
    if line.text[0] in _BULLETS or abs(previous.size - line.size) > 1:
        return True
    gap = previous.y - line.y
    if layout.spacing and (gap < -layout.spacing / 2 or gap > layout.spacing * _PARAGRAPH_GAP):
        return True
    return (
        previous.x <= layout.margin + 1
        and line.x > layout.margin + line.size
        and len(previous.text) < 0.85 * layout.width  # a full line before an indent is a hanging indent
    )


def _drop_running_lines(pages: list[list[_Line]]) -> None:
    """Remove page headers and footers: first or last lines that recur (digits aside) on most pages."""
    if len(pages) < 3:
        return
    keys = Counter(key for lines in pages for key in {_running_key(line) for line in lines[:1] + lines[-1:]})
    running = {key for key, count in keys.items() if count >= max(3, 0.6 * len(pages))}
    if not running:
        return
    for lines in pages:
        for edge in (0, -1):
            if lines and _running_key(lines[edge]) in running:
                lines.pop(edge)


def _running_key(line: _Line) -> str:
    return _DIGITS.sub("#", line.text)


def _info_title(reader: pypdf.PdfReader) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # a damaged info dictionary only costs the title
        return None
    return normalise_line(str(title)) if title else None


def _reason(error: Exception) -> str:
    return str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
