"""The corpus seams: ``Loader`` (bytes → ``Document``), ``Chunker`` (``Document`` → ``Chunk``s) and
``Embedder`` (texts → vectors).

A ``Document`` is normalised text plus its structure: ``blocks`` are headings, paragraphs, code, tables
and list items in reading order, each with character offsets into ``Document.text`` (so
``doc.text[b.start:b.end] == b.text``) and the page it starts on when the format has pages. Chunkers
derive section paths from the headings. For text formats the loader also attaches a ``SourceMap`` so that
``Document.file_span`` turns those offsets into offsets into the file's decoded text (what citations
carry); for PDF, DOCX and HTML offsets stay in the extracted text (plus page or section).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from aifab.corpus.sourcemap import SourceMap

BlockKind = Literal["heading", "paragraph", "code", "table", "list"]


@dataclass
class Block:
    kind: BlockKind
    text: str
    start: int
    end: int
    level: int = 0  # heading depth, 1 = top
    page: int | None = None  # 1-based, for paged formats


@dataclass
class Document:
    source: str  # the path (or upload name) it came from
    format: str  # "txt", "md", "rst", "html", "pdf", "docx", "csv", "json", "jsonl"
    title: str
    text: str
    blocks: list[Block]
    metadata: dict[str, Any] = field(default_factory=dict)
    source_map: SourceMap | None = field(default=None, repr=False, compare=False)

    @property
    def offsets(self) -> Literal["file", "extracted"]:
        """What ``file_span`` offsets index: the file's decoded text, or the extracted text."""
        return "file" if self.source_map is not None else "extracted"

    def file_span(self, start: int, end: int) -> tuple[int, int]:
        """``text[start:end]``'s place in the file's decoded text (text formats), else in ``text``."""
        return self.source_map.span(start, end) if self.source_map is not None else (start, end)


@runtime_checkable
class Loader(Protocol):
    """Turns the bytes of one file into a ``Document``; raises ``InvalidDocument`` with a reason."""

    formats: tuple[str, ...]

    def load(self, data: bytes, source: str) -> Document: ...


@dataclass
class Chunk:
    text: str
    start: int  # character offsets into Document.text
    end: int
    tokens: int  # in the embedder's tokenizer
    section: tuple[str, ...] = ()  # heading path, outermost first
    page: int | None = None


@runtime_checkable
class Chunker(Protocol):
    def chunk(self, document: Document) -> list[Chunk]: ...

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the chunks (class, sizes, tokenizer); part of the pipeline identity."""


@runtime_checkable
class Embedder(Protocol):
    name: str  # identity of the model (name and weights hash); part of the pipeline identity
    dimensions: int
    max_tokens: int  # longest input the model sees whole

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dimensions), rows L2-normalised."""
