"""``TextLoader``, the base of every loader whose input is text, and the plain-text loader."""

from __future__ import annotations

import re

from aifab.corpus.loaders.build import DocumentBuilder
from aifab.corpus.loaders.decode import DecodedText, decode_text
from aifab.corpus.loaders.normalise import clean
from aifab.corpus.protocol import Document
from aifab.errors import InvalidDocument, NothingToIndex

_BLANK_LINE = re.compile(r"\n[ \t]*\n")


class TextLoader:
    """Decodes once, then ``parse`` fills a ``DocumentBuilder`` from the text.

    ``load_document`` has already decoded the bytes to sniff their format and calls ``load_text``
    directly; ``load`` is the ``Loader`` protocol's entry for a caller that knows the format.
    """

    formats: tuple[str, ...] = ()

    def load(self, data: bytes, source: str) -> Document:
        if not data.strip():
            raise NothingToIndex("empty file")
        return self.load_text(decode_text(data), source)

    def load_text(self, decoded: DecodedText, source: str) -> Document:
        builder = DocumentBuilder()
        builder.metadata["encoding"] = decoded.encoding
        try:
            # Cleaned once up front, so parsers see one line-ending convention and no control characters.
            self.parse(clean(decoded.text), builder)
        except RecursionError:  # the markup parsers recurse once per nesting level (quotes, lists, tags)
            raise InvalidDocument("nested too deeply to read") from None
        return builder.build(source=source, format=self.formats[0])

    def parse(self, text: str, builder: DocumentBuilder) -> None:
        raise NotImplementedError


class PlainTextLoader(TextLoader):
    """Plain text: one paragraph per run of lines between blank lines, soft wraps joined."""

    formats: tuple[str, ...] = ("txt",)

    def parse(self, text: str, builder: DocumentBuilder) -> None:
        for paragraph in _BLANK_LINE.split(text):
            builder.paragraph(paragraph)
