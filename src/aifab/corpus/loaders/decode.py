"""Bytes → text: byte-order marks first, then UTF-8, then charset detection; binary data is refused.

The order matters. A BOM is proof; valid UTF-8 is almost proof (other encodings rarely form valid UTF-8
multi-byte sequences by accident); only then is the slower statistical detection of ``charset_normalizer``
asked, and cp1252 (what "ANSI" means on Western Windows machines) is the last resort. Text that was
decoded wrongly once and saved again as UTF-8 ("cafÃ©") is repaired by ``ftfy`` when it shows the
tell-tale byte pairs; the check is a regular expression, so clean text pays almost nothing.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from aifab.errors import InvalidDocument

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: the UTF-32-LE BOM starts with the UTF-16-LE one
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_SAMPLE = 8192
# Bytes that text files do not contain (tab, line feed, form feed, carriage return and ESC excepted).
_BINARY_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")
_DECLARED = re.compile(rb"""<meta[^>]+charset=["']?([\w.:-]+)|<\?xml[^>]+encoding=["']([\w.:-]+)""", re.I)
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]")
# UTF-8 read as cp1252/latin-1: "Ã©", "â€™", "Â " ...
_MOJIBAKE = re.compile("[ÃÂ][\u0080-\u00bf]|â€[\u0080-\u00bf™œ˜šžŸ\u201a-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a]")


# A non-ASCII character that is not a letter, between two letters: "Za¿ó³æ" is Polish read as cp1252.
_SYMBOL_IN_WORD = re.compile(r"(?<=[^\W\d_])[^\w\s\x00-\x7f’–—](?=[^\W\d_])")


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str  # the codec name that decoded it, for Document.metadata["encoding"]


def decode_text(data: bytes) -> DecodedText:
    """Decode a text file; an encoding it declares (HTML ``<meta charset>``, XML ``encoding=``) is
    believed when the bytes are not UTF-8.

    Raises ``InvalidDocument("binary file (...)")`` for data that is not text in any encoding.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return DecodedText(data.decode(codec, errors="replace"), codec)
    if b"\x00" in data[:_SAMPLE]:
        raise InvalidDocument("binary file (contains NUL bytes)")
    try:
        return _repaired(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError as error:
        if _mostly_utf8(data, error):
            return _repaired(data.decode("utf-8", errors="replace"), "utf-8")
    declared = _declared_charset(data)
    if declared and _known_codec(declared):
        try:
            return DecodedText(data.decode(declared), codecs.lookup(declared).name)
        except UnicodeDecodeError:
            pass
    if len(_BINARY_BYTES.findall(data[:_SAMPLE])) > len(data[:_SAMPLE]) // 100:
        raise InvalidDocument("binary file (not text in any known encoding)")
    return _detected(data)


def _mostly_utf8(data: bytes, error: UnicodeDecodeError) -> bool:
    """UTF-8 with a stray bad byte (a truncated copy, one pasted cp1252 character) is still UTF-8."""
    bad = data.decode("utf-8", errors="replace").count("\ufffd")
    return error.start > 0 and bad * 1000 <= len(data) and len(_UTF8_MULTIBYTE.findall(data, 0, 1 << 20)) > bad


def _detected(data: bytes) -> DecodedText:
    """cp1252 when it reads as Western text, else the best guess of ``charset_normalizer``.

    Statistical detection is unreliable on short Western text (it reads "naïve" in cp1252 as Czech
    cp1250 "naďve"), so cp1252 goes first when its reading looks right: every byte defined, no symbol
    wedged inside a word, and most letters plain ASCII (true of every Western European language, false of
    Cyrillic or Greek read as cp1252).
    """
    try:
        western = data.decode("cp1252")
    except UnicodeDecodeError:
        western = None
    if western is not None and _reads_as_western(western):
        return DecodedText(western, "cp1252")
    from charset_normalizer import from_bytes

    for match in from_bytes(data):
        # Without NUL bytes, UTF-16/32 is never the right reading of a text file.
        if match.encoding and not match.encoding.startswith(("utf_16", "utf_32")):
            return DecodedText(str(match), match.encoding)
    if western is not None:
        return DecodedText(western, "cp1252")
    raise InvalidDocument("binary file (not text in any known encoding)")


def _reads_as_western(text: str) -> bool:
    if _SYMBOL_IN_WORD.search(text):
        return False
    letters = sum(char.isalpha() for char in text)
    foreign = sum(char.isalpha() for char in text if not char.isascii())
    return foreign * 10 <= letters * 3


def _repaired(text: str, encoding: str) -> DecodedText:
    if text.isascii() or not _MOJIBAKE.search(text):
        return DecodedText(text, encoding)
    import ftfy

    return DecodedText(ftfy.fix_encoding(text), encoding)


def _known_codec(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def _declared_charset(data: bytes) -> str | None:
    match = _DECLARED.search(data, 0, 4096)
    if match is None:
        return None
    return (match.group(1) or match.group(2)).decode("ascii")
