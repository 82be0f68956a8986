"""The corpus seams: ``Loader`` (bytes → ``Document``), ``Chunker`` (``Document`` → ``Chunk``s) and
``Embedder`` (texts → vectors).

A ``Document`` is normalised text plus its structure: ``blocks`` are headings, paragraphs, code, tables
and list items in reading order, each with character offsets into ``Document.text`` (so
``doc.text[b.start:b.end] == b.text``) and the page it starts on when the format has pages. Chunkers
derive section paths from the headings; citations point back through the offsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

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
