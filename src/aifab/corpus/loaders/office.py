"""DOCX (Word 2007+) → blocks, by ``python-docx``, body content in document order.

Paragraph styles decide the kind: "Title" and "Heading N" are headings (level 1 and N), "List ..."
styles and numbered paragraphs are list items (their numbering level is the nesting depth), code-like
styles ("Code", "HTML Preformatted", "Macro Text", ...) are code, consecutive code paragraphs forming
one block; tables are table blocks (a merged cell counted once). The core properties' title is the
fallback title.

Not read: headers and footers (boilerplate), footnotes, comments, text boxes, and tables nested in
table cells (their cell's own paragraphs are read).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from aifab.corpus.loaders.build import DocumentBuilder
from aifab.corpus.protocol import Document
from aifab.errors import InvalidDocument

if TYPE_CHECKING:  # imported when a DOCX is loaded: python-docx takes a noticeable time to import
    from docx.table import Table
    from docx.text.paragraph import Paragraph

_HEADING = re.compile(r"^heading (\d)$", re.IGNORECASE)
_CODE_STYLE = re.compile(r"code|preformatted|macro|source|verbatim", re.IGNORECASE)


class DocxLoader:
    formats: tuple[str, ...] = ("docx",)

    def load(self, data: bytes, source: str) -> Document:
        import docx

        # A damaged package makes python-docx raise many kinds of error (BadZipFile, KeyError, lxml's
        # XMLSyntaxError, PackageNotFoundError); each is one unreadable file, reported with its reason.
        try:
            document = docx.Document(io.BytesIO(data))
        except Exception as error:
            raise InvalidDocument(f"corrupt DOCX ({str(error).strip() or type(error).__name__})") from None
        builder = DocumentBuilder()
        _Body(builder).read(document.iter_inner_content())
        builder.title = document.core_properties.title or None
        return builder.build(source=source, format="docx")


class _Body:
    def __init__(self, builder: DocumentBuilder) -> None:
        self.builder = builder
        self.code: list[str] = []  # consecutive code paragraphs, written as one block
        self.numbers: dict[int, int] = {}  # the running number of ordered items, by depth

    def read(self, content: Iterable[Paragraph | Table]) -> None:
        from docx.table import Table
        from docx.text.paragraph import Paragraph

        for item in content:
            if isinstance(item, Table):
                self._flush_code()
                self.numbers.clear()
                self.builder.table(_rows(item))
            elif isinstance(item, Paragraph):
                self._paragraph(item)
        self._flush_code()

    def _paragraph(self, paragraph: Paragraph) -> None:
        style = paragraph.style.name if paragraph.style is not None and paragraph.style.name else ""
        if _CODE_STYLE.search(style):
            self.code.append(paragraph.text)
            return
        self._flush_code()
        depth = _list_depth(paragraph, style)
        if depth is None:
            self.numbers.clear()
            heading = _HEADING.match(style)
            if heading or style == "Title":
                self.builder.heading(paragraph.text, int(heading.group(1)) if heading else 1)
            else:
                self.builder.paragraph(paragraph.text)
            return
        marker = "-"
        if "number" in style.lower():
            self.numbers = {level: count for level, count in self.numbers.items() if level <= depth}
            self.numbers[depth] = self.numbers.get(depth, 0) + 1
            marker = f"{self.numbers[depth]}."
        self.builder.list_item(paragraph.text, marker=marker, depth=depth)

    def _flush_code(self) -> None:
        if self.code:
            self.builder.code("\n".join(self.code))
            self.code = []


def _list_depth(paragraph: Paragraph, style: str) -> int | None:
    """The nesting depth of a list paragraph (0 = top), None for a paragraph that is not a list item."""
    from docx.oxml.ns import qn

    properties = paragraph._p.pPr
    numbering = properties.find(qn("w:numPr")) if properties is not None else None
    if numbering is not None:
        number, level = numbering.find(qn("w:numId")), numbering.find(qn("w:ilvl"))
        if number is not None and number.get(qn("w:val")) != "0":  # numId 0 means "numbering removed"
            return int(level.get(qn("w:val"), "0")) if level is not None else 0
    if style.lower().startswith("list"):
        level = re.search(r"(\d)$", style)
        return int(level.group(1)) - 1 if level else 0
    return None


def _rows(table: Table) -> list[list[str]]:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) not in seen:  # a merged cell is returned once per grid column it spans
                seen.add(id(cell._tc))
                cells.append(cell.text)
        rows.append(cells)
    return rows
