"""Which format a file is in, judged by its content first and its name second.

Extensions lie (a ``.pdf`` that is a text export, a ``.txt`` that is a PDF), so the bytes decide: magic
numbers for PDF, DOCX and known binary formats; then the decoded text's shape for HTML and JSON; only
among the light-markup text formats (Markdown, reStructuredText, CSV, plain text), which cannot be told
apart reliably from content alone, does a known extension win, and content decides for the rest.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import PurePath

from aifab.corpus.loaders.decode import DecodedText, decode_text
from aifab.errors import InvalidDocument, NothingToIndex

_MAGIC = (
    (b"\x7fELF", "ELF executable"),
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"\x1f\x8b", "gzip archive"),
    (b"BZh", "bzip2 archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "7z archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "legacy Office document; save it as .docx or PDF"),
    (b"\x00asm", "WebAssembly module"),
)
_ZIP_MEMBERS = (
    ("xl/workbook.xml", "Excel workbook"),
    ("ppt/presentation.xml", "PowerPoint presentation"),
    ("content.xml", "OpenDocument file"),
)
_MARKDOWN_EXT = frozenset({".md", ".markdown", ".mdown", ".mkd"})
_RST_EXT = frozenset({".rst", ".rest", ".rst.txt"})  # Sphinx publishes sources as *.rst.txt
_CSV_EXT = frozenset({".csv", ".tsv"})
_JSON_EXT = frozenset({".json", ".geojson"})
_JSONL_EXT = frozenset({".jsonl", ".ndjson"})
_HTML_EXT = frozenset({".html", ".htm", ".xhtml"})

_HTML_TAG = re.compile(r"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]", re.IGNORECASE)
_RST_SIGNS = re.compile(r"^\.\. [\w:-]+::|:[\w:]+:`[^`\n]+`|^\.\. _[^:\n]+:\s*$", re.MULTILINE)
_MARKDOWN_SIGNS = re.compile(r"^#{1,6} \S|^(```|~~~)|\]\([^)\s]+\)", re.MULTILINE)
_UNDERLINED_TITLE = re.compile(r"^\w[^\n]*\n([=\-~^\"'`#*+])\1{2,}[ \t]*$", re.MULTILINE)
_SAMPLE = 20_000
_BLANK = " \t\n\r\x0b\x0c\u00a0\u200b\ufeff"  # what a file of nothing but blanks may hold
_PDF_HEADER = re.compile(rb"%PDF-\d\.\d")


def detect_format(data: bytes, source: str) -> str:
    """The format name ("pdf", "docx", "html", "json", "jsonl", "md", "rst", "csv" or "txt") of a file.

    Raises ``NothingToIndex`` for an empty file and ``InvalidDocument`` for binary data that no loader reads.
    """
    return sniff(data, source)[0]


def sniff(data: bytes, source: str) -> tuple[str, DecodedText | None]:
    """The format, and the decoded text for text formats (so that it is decoded once)."""
    if not data.strip():
        raise NothingToIndex("empty file")
    if _PDF_HEADER.search(data, 0, 1024):  # readers accept junk before the header, so do we
        return "pdf", None
    if data.startswith(b"PK\x03\x04"):
        return _zip_format(data, source), None
    for magic, name in _MAGIC:
        if data.startswith(magic):
            raise InvalidDocument(f"binary file ({name})")
    decoded = decode_text(data)
    if not decoded.text.strip(_BLANK):
        raise NothingToIndex("empty file")
    return text_format(decoded.text, source), decoded


def text_format(text: str, source: str) -> str:
    """The format of decoded text: HTML and JSON by shape, then extension, then markup signs."""
    ext = extension(source)
    head = text[:4096].lstrip()
    if head.startswith("<") and (_HTML_TAG.search(head[:2048]) or ext in _HTML_EXT):
        return "html"
    if head[:1] in ("{", "["):
        structured = _json_format(text, ext)
        if structured:
            return structured
    if ext in _MARKDOWN_EXT:
        return "md"
    if ext in _RST_EXT:
        return "rst"
    if ext in _CSV_EXT:
        return "csv"
    sample = text[:_SAMPLE]
    if _RST_SIGNS.search(sample):
        return "rst"
    if _MARKDOWN_SIGNS.search(sample):
        return "md"
    if _UNDERLINED_TITLE.search(sample):
        return "rst"  # setext Markdown headings are underlined titles too; both loaders read them
    if _looks_like_csv(sample):
        return "csv"
    return "txt"


def extension(source: str) -> str:
    """The lower-case extension, with ``.rst.txt`` as one."""
    name = PurePath(source.replace("\\", "/")).name.lower()
    if name.endswith(".rst.txt"):
        return ".rst.txt"
    return PurePath(name).suffix


def _zip_format(data: bytes, source: str) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        # The member names also sit in the local headers, readable when the directory at the end is lost.
        if b"word/" in data[:65536] or extension(source) == ".docx":
            raise InvalidDocument(f"corrupt DOCX (damaged zip archive: {error})") from None
        raise InvalidDocument(f"binary file (damaged zip archive: {error})") from None
    if "word/document.xml" in names:
        return "docx"
    kind = next((name for member, name in _ZIP_MEMBERS if member in names), "zip archive")
    raise InvalidDocument(f"binary file ({kind})")


def _json_format(text: str, ext: str) -> str | None:
    """"json" if the whole text parses, "jsonl" if every non-empty line does, else None."""
    try:
        json.loads(text)
    except ValueError:
        pass
    else:
        return "jsonl" if ext in _JSONL_EXT else "json"
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        for line in lines:
            json.loads(line)
    except ValueError:
        # A file named .json(l) that starts like JSON is meant to be JSON: its loader names the error.
        return "json" if ext in _JSON_EXT else "jsonl" if ext in _JSONL_EXT else None
    return "jsonl" if len(lines) > 1 or ext in _JSONL_EXT else None


def _looks_like_csv(sample: str) -> bool:
    """Rows of one width (two fields or more) under a sniffed delimiter, and a header naming every column.

    Prose has commas too: when most commas are followed by a space, as in sentences, it takes more
    (three columns, five rows) to believe that the text is a table.
    """
    lines = [line for line in sample[: sample.rfind("\n") + 1 or None].splitlines() if line.strip()][:20]
    if len(lines) < 3:
        return False
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t")
    except csv.Error:
        return False
    rows = list(csv.reader(lines, dialect))
    width = len(rows[0])
    if width < 2 or any(len(row) != width for row in rows) or not all(name.strip() for name in rows[0]):
        return False
    text = "\n".join(lines)
    if dialect.delimiter == "," and text.count(", ") * 2 > text.count(","):
        return width >= 3 and len(rows) >= 5
    return True

