"""Hand-built ``Document``s for tests of chunkers and pipelines, with offsets that are right by
construction."""

from __future__ import annotations

from aifab.corpus.protocol import Block, BlockKind, Document


class DocumentBuilder:
    """Appends blocks (separated by a blank line) and loose markup to one text, recording offsets.

    >>> doc = DocumentBuilder().heading("Intro").paragraph("Hello.", page=1).build()
    >>> doc.text[doc.blocks[1].start : doc.blocks[1].end]
    'Hello.'
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._blocks: list[Block] = []
        self._length = 0

    def block(self, kind: BlockKind, text: str, *, level: int = 0, page: int | None = None) -> DocumentBuilder:
        if self._parts:
            self.raw("\n\n")
        self._blocks.append(Block(kind, text, self._length, self._length + len(text), level, page))
        return self.raw(text)

    def __len__(self) -> int:
        """Characters so far."""
        return self._length

    def raw(self, text: str) -> DocumentBuilder:
        """Text outside any block, such as the markup a loader keeps (a code fence, a table rule)."""
        self._parts.append(text)
        self._length += len(text)
        return self

    def heading(self, text: str, level: int = 1, *, page: int | None = None) -> DocumentBuilder:
        return self.block("heading", text, level=level, page=page)

    def paragraph(self, text: str, *, page: int | None = None) -> DocumentBuilder:
        return self.block("paragraph", text, page=page)

    def code(self, text: str, *, page: int | None = None) -> DocumentBuilder:
        return self.block("code", text, page=page)

    def table(self, text: str, *, page: int | None = None) -> DocumentBuilder:
        return self.block("table", text, page=page)

    def items(self, text: str, *, page: int | None = None) -> DocumentBuilder:
        return self.block("list", text, page=page)

    def build(self, source: str = "test.md", format: str = "md", title: str = "test") -> Document:
        return Document(source, format, title, "".join(self._parts), list(self._blocks))
