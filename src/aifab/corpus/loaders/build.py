"""``DocumentBuilder``: the one place where blocks become ``Document.text`` and its offsets.

Loaders parse their format and hand the builder raw block text by kind; the builder normalises it (with
the strength that kind needs, see ``normalise``), drops what is empty, and appends it to the text.
Because the text is made *from* the blocks, ``doc.text[b.start:b.end] == b.text`` holds by construction,
blocks are in reading order and never overlap, whatever the format.

Blocks are separated by a blank line, except consecutive list items, which are separated by a single
line break so that a chunk of a list still reads as a list.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from aifab.corpus.loaders.normalise import clean, normalise_line, normalise_lines, normalise_prose
from aifab.corpus.protocol import Block, BlockKind, Document
from aifab.errors import NothingToIndex

CELL_SEPARATOR = " | "
# Suffixes removed from a file name to make a title of it ("library/os.rst.txt" → "os").
_TITLE_SUFFIXES = frozenset(
    {".txt", ".text", ".md", ".markdown", ".rst", ".html", ".htm", ".xhtml", ".pdf", ".docx", ".csv",
     ".tsv", ".json", ".jsonl", ".ndjson"}
)


class DocumentBuilder:
    """Collects blocks in reading order; ``page`` is stamped on each block added while it is set.

    Parsers also set ``title`` (a title the file declares: HTML ``<title>``, DOCX core properties, PDF
    info) and ``metadata`` (format-specific extras: pages, rows, encoding) as they find them.
    """

    def __init__(self) -> None:
        self.page: int | None = None
        self.title: str | None = None
        self.metadata: dict[str, Any] = {}
        self._blocks: list[Block] = []
        self._parts: list[str] = []
        self._length = 0

    def heading(self, text: str, level: int) -> None:
        self._add("heading", normalise_line(text), level=max(1, level))

    def paragraph(self, text: str, *, keep_lines: bool = False) -> None:
        """Prose is unwrapped and de-hyphenated; ``keep_lines`` keeps its line breaks (records, signatures)."""
        self._add("paragraph", normalise_lines(text) if keep_lines else normalise_prose(text))

    def code(self, text: str) -> None:
        """Code keeps every space and indentation; only leading and trailing blank lines are dropped."""
        lines = clean(text).split("\n")
        while lines and not lines[0].strip():
            lines.pop(0)
        while lines and not lines[-1].strip():
            lines.pop()
        self._add("code", "\n".join(lines))

    def table(self, rows: list[list[str]]) -> None:
        """One line per row, cells joined with ``CELL_SEPARATOR``; empty rows are dropped."""
        lines = []
        for row in rows:
            cells = [normalise_line(cell) for cell in row]
            if any(cells):
                lines.append(CELL_SEPARATOR.join(cells))
        self._add("table", "\n".join(lines))

    def record(self, text: str) -> None:
        """A data record (CSV row, JSON element): a table block whose lines are kept as they are."""
        self._add("table", normalise_lines(text))

    def list_item(self, text: str, *, marker: str = "-", depth: int = 0) -> None:
        """A list item as ``"- text"``, indented two spaces per nesting level; its text is unwrapped prose.

        An empty ``marker`` continues the previous item (its second paragraph), aligned with its text.
        """
        body = normalise_prose(text)
        if body:
            self._add("list", "  " * depth + (f"{marker} " if marker else "  ") + body)

    def build(self, *, source: str, format: str, empty_reason: str = "no text found") -> Document:
        """The document; its title is the first heading, else ``self.title``, else the file's name."""
        if not self._blocks:
            raise NothingToIndex(empty_reason)
        heading = next((block.text for block in self._blocks if block.kind == "heading"), None)
        return Document(
            source=source,
            format=format,
            title=heading or normalise_line(self.title or "") or title_from_source(source),
            text="".join(self._parts),
            blocks=self._blocks,
            metadata=self.metadata,
        )

    def _add(self, kind: BlockKind, text: str, *, level: int = 0) -> None:
        if not text.strip():
            return
        if self._blocks:
            separator = "\n" if kind == "list" and self._blocks[-1].kind == "list" else "\n\n"
            self._parts.append(separator)
            self._length += len(separator)
        start = self._length
        self._parts.append(text)
        self._length += len(text)
        self._blocks.append(Block(kind, text, start, self._length, level=level, page=self.page))


def title_from_source(source: str) -> str:
    """The file name without its known suffixes: ``"docs/os.rst.txt"`` → ``"os"``."""
    name = PurePath(source.replace("\\", "/")).name
    while True:
        stem, dot, suffix = name.rpartition(".")
        if not dot or not stem or f".{suffix.lower()}" not in _TITLE_SUFFIXES:
            return name or source
        name = stem
