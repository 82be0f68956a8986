"""Document loaders: the bytes of one file → a ``Document`` of normalised text and structured blocks.

``load_document`` is the entry point: it checks the size, sniffs the format from the content (see
``sniff``), and hands the file to the loader registered for that format. Every failure is an
``InvalidDocument`` whose message is the reason, in words a user understands ("empty file", "binary
file (PNG image)", "corrupt PDF (...)").

Each loader implements the ``Loader`` protocol and can be used on its own when the format is known.
"""

from __future__ import annotations

from types import MappingProxyType

from aifab.corpus.loaders.htmlpage import HtmlLoader
from aifab.corpus.loaders.markdown import MarkdownLoader
from aifab.corpus.loaders.office import DocxLoader
from aifab.corpus.loaders.pdf import PdfLoader
from aifab.corpus.loaders.rst import RstLoader
from aifab.corpus.loaders.sniff import detect_format, sniff
from aifab.corpus.loaders.structured import JsonlLoader, JsonLoader
from aifab.corpus.loaders.tabular import CsvLoader
from aifab.corpus.loaders.text import PlainTextLoader, TextLoader
from aifab.corpus.protocol import Document, Loader
from aifab.errors import InvalidDocument

_ALL: tuple[Loader, ...] = (
    PlainTextLoader(), MarkdownLoader(), RstLoader(), HtmlLoader(), PdfLoader(), DocxLoader(), CsvLoader(),
    JsonLoader(), JsonlLoader(),
)
LOADERS = MappingProxyType({name: loader for loader in _ALL for name in loader.formats})
"""The loader for each format name (read-only)."""


def load_document(data: bytes, source: str, *, max_bytes: int) -> Document:
    """Load one file, whatever its format; ``source`` is its path or upload name (used for the format
    hint and the fallback title). Raises ``InvalidDocument`` with the reason when it cannot be loaded."""
    if len(data) > max_bytes:
        raise InvalidDocument(f"file is {_size(len(data), max_bytes)}, over the limit of {_size(max_bytes, len(data))}")
    format, decoded = sniff(data, source)
    loader = LOADERS[format]
    if decoded is not None and isinstance(loader, TextLoader):
        return loader.load_text(decoded, source)
    return loader.load(data, source)


def _size(count: int, other: int) -> str:
    """A byte count in MB (KB below one MB), precise enough to differ from ``other``."""
    unit, name = (1024 * 1024, "MB") if max(count, other) >= 1024 * 1024 else (1024, "KB")
    for digits in range(4):
        text = f"{count / unit:.{digits}f}"
        if text != f"{other / unit:.{digits}f}":
            return f"{text} {name}"
    return f"{count} bytes"


__all__ = ["LOADERS", "InvalidDocument", "detect_format", "load_document"]
