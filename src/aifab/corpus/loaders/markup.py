"""What the line-based Markdown and reStructuredText parsers share: indentation arithmetic, and ``Prose``,
which decides where a paragraph goes (top level, inside a list item, after a "Note:" lead-in).

Both parsers are hand-written rather than built on ``markdown-it-py`` or ``docutils``: those build full
syntax trees with inline markup (~1 MB/s for markdown-it-py, several times slower than this for a
200 KB file), while retrieval needs only the blocks and their text.
"""

from __future__ import annotations

from dataclasses import dataclass

from aifab.corpus.loaders.build import DocumentBuilder
from aifab.errors import InvalidDocument

TAB_WIDTH = 4
# Deeper nesting than this is not a document but an attack or an accident: each level costs a pass
# over the lines it holds, so the work, not just the stack, grows with the depth.
MAX_NESTING = 50


def indent_of(line: str, tab: int = TAB_WIDTH) -> int:
    """Columns of leading whitespace, tabs to the next multiple of ``tab``."""
    unindented = line.lstrip(" ")
    if not unindented.startswith("\t"):
        return len(line) - len(unindented)
    column = 0
    for char in line:
        if char == " ":
            column += 1
        elif char == "\t":
            column += tab - column % tab
        else:
            break
    return column


def strip_columns(line: str, columns: int, tab: int = TAB_WIDTH) -> str:
    """``line`` without its first ``columns`` columns of indentation; a partly used tab leaves spaces."""
    column = 0
    for index, char in enumerate(line):
        if column >= columns or char not in " \t":
            return " " * (column - columns) + line[index:]
        column += 1 if char == " " else tab - column % tab
    return ""


def dedent(lines: list[str], tab: int = TAB_WIDTH) -> list[str]:
    """Remove the indentation common to the non-blank lines; blank lines become empty."""
    depth = min((indent_of(line, tab) for line in lines if line.strip()), default=0)
    return [strip_columns(line, depth, tab) if line.strip() else "" for line in lines]


def indented_block(lines: list[str], start: int, min_indent: int = 1, tab: int = TAB_WIDTH) -> int:
    """The end of the block from ``start`` of lines indented at least ``min_indent`` (blank lines inside
    included, trailing blank lines not)."""
    end = index = start
    while index < len(lines):
        line = lines[index]
        if line.strip():
            if indent_of(line, tab) < min_indent:
                break
            end = index + 1
        index += 1
    return end


@dataclass
class Prose:
    """Where the next paragraphs go.

    At the top level (``depth is None``) they are paragraphs. Inside a list item they are list blocks:
    the first carries the item's ``marker``, later ones continue it. ``lead`` is text put in front of the
    next paragraph only: "Note:" for an admonition, "term:" for a definition.
    """

    builder: DocumentBuilder
    depth: int | None = None
    marker: str = ""
    lead: str = ""

    def paragraph(self, text: str) -> None:
        if self.lead:
            text = f"{self.lead} {text}"
            self.lead = ""
        if self.depth is None:
            self.builder.paragraph(text)
        else:
            self.builder.list_item(text, marker=self.marker, depth=self.depth)
            self.marker = ""

    def before_block(self) -> None:
        """Called before a non-paragraph block (code, table), so that a pending lead is not lost."""
        if self.lead:
            lead, self.lead = self.lead, ""
            self.paragraph(lead)

    def item(self, marker: str) -> Prose:
        """The prose of a list item one level deeper."""
        return Prose(self.builder, depth=0 if self.depth is None else self.depth + 1, marker=marker)

    def led(self, lead: str) -> Prose:
        """The same place, with ``lead`` in front of the next paragraph."""
        return Prose(self.builder, depth=self.depth, marker=self.marker, lead=lead)


class BlockParser:
    """The loop shared by the line-based parsers: one block at a time, from the line where it starts;
    nested content (a quote, a list item, a directive's body) is dedented and parsed recursively."""

    def __init__(self, builder: DocumentBuilder) -> None:
        self.builder = builder
        self._nesting = 0

    def parse(self, lines: list[str], prose: Prose) -> None:
        if self._nesting >= MAX_NESTING:
            raise InvalidDocument("nested too deeply to read")
        self._nesting += 1
        try:
            index = 0
            while index < len(lines):
                index = self._block(lines, index, prose)
        finally:
            self._nesting -= 1

    def _block(self, lines: list[str], index: int, prose: Prose) -> int:
        """Reads the block starting at ``lines[index]``; returns the index after it."""
        raise NotImplementedError
