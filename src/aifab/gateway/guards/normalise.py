"""Other spellings of a text for the injection rules to read: the same words once look-alike characters,
spacing tricks, digits for letters and reversal are undone.

``views(low, table)`` gives, besides the lower-cased text itself, at most two more strings, each with a map
from its positions back to the text's: the *folded* text (NFKC, so full-width and mathematical letters become
ASCII; Cyrillic and Greek look-alikes become the Latin letter they imitate; zero-width characters and soft
hyphens removed; letter-spaced runs such as "i g n o r e" or "r.e.v.e.a.l" joined; digits inside words read
as letters, "1gn0r3" as "ignore") and the folded text reversed, when it holds a reversed keyword
("snoitcurtsni"). Each is built only when the text needs it, so plain ASCII prose costs three regex scans.

Limits: the look-alike table covers the Cyrillic, Greek and Armenian letters that pass for Latin ones in
common fonts, not all of Unicode's confusables; spacing is undone only for runs of single letters with the
same separator; a text that is entirely in Cyrillic is folded too, which is harmless (it then matches no
English rule)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator

Span = tuple[int, int]
View = tuple[str, Callable[[Span], Span]]

_LOOKALIKES = {  # lower case (the text is lower-cased first) -> the Latin letter it passes for
    "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "ё": "e", "һ": "h", "н": "h", "і": "i", "ї": "i", "ј": "j",
    "к": "k", "ӏ": "l", "м": "m", "о": "o", "р": "p", "ԛ": "q", "ѕ": "s", "т": "t", "у": "y", "х": "x", "ԝ": "w",
    "ь": "b", "ѵ": "v", "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ո": "n", "ս": "u", "ց": "g", "ɡ": "g", "ı": "i", "ȷ": "j", "ɩ": "i",
}
_INVISIBLE = frozenset("\u00ad\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff")
_LEET = str.maketrans("013457", "oieast")

_L = r"[^\W\d_]"  # a letter
_SPACED = re.compile(r"\b" + _L + r"(?P<s>[ .\-_*'·])" + _L + r"(?:(?P=s)" + _L + r")+\b")  # i g n o r e, r.e.v.e.a.l, i-g-n-o-r-e
_LEET_HINT = re.compile(r"[a-z]\d+[a-z]")  # pr3v10u5, 1n5truct10n5
_LEET_WORD = re.compile(r"\b(?=[a-z]*\d)(?=\d*[a-z])[a-z\d]+\b")
_REVERSED = re.compile(r"erongi|dragersid|snoitcurtsni|tpmorp|suoiverp|laever|tegrof|edom\s+repoleved")


class FoldTable(dict[int, str | None]):
    """``str.translate`` table that fills itself: a character's NFKC form, lower-cased, look-alikes
    replaced; ``None`` (deleted) for invisible characters. One per guard (not module state); it keeps at most
    ``MAX`` characters, so a client sending every code point cannot grow it without bound."""

    MAX = 8192

    def __missing__(self, code: int) -> str | None:
        ch = chr(code)
        if ch in _INVISIBLE:
            value = None
        else:
            value = "".join(_LOOKALIKES.get(c, c) for c in unicodedata.normalize("NFKC", ch).lower())
        if len(self) < self.MAX:
            self[code] = value
        return value


def _identity(span: Span) -> Span:
    return span


def _through(index: list[int]) -> Callable[[Span], Span]:
    def back(span: Span) -> Span:
        return index[span[0]], index[span[1] - 1] + 1

    return back


def _char_index(low: str, table: FoldTable) -> list[int]:
    """For each character of ``low.translate(table)``, the position in ``low`` it came from."""
    index: list[int] = []
    for i, ch in enumerate(low):
        out = ch if ch.isascii() else table[ord(ch)]
        if out:
            index.extend([i] * len(out))
    return index


def _join_spaced(text: str, index: list[int]) -> tuple[str, list[int]]:
    parts: list[str] = []
    kept: list[int] = []
    pos = 0
    for m in _SPACED.finditer(text):
        parts.append(text[pos:m.start()])
        kept.extend(index[pos:m.start()])
        parts.append(text[m.start():m.end():2])
        kept.extend(index[m.start():m.end():2])
        pos = m.end()
    parts.append(text[pos:])
    kept.extend(index[pos:])
    return "".join(parts), kept


def fold(low: str, table: FoldTable) -> tuple[str, list[int] | None]:
    """The folded spelling of ``low`` (lower-cased text) and, when its length differs, the position in
    ``low`` of each of its characters."""
    text, index = low, None
    if not low.isascii():
        text = low.translate(table)
        if len(text) != len(low):
            index = _char_index(low, table)
    if _SPACED.search(text):
        text, index = _join_spaced(text, index if index is not None else list(range(len(text))))
    if _LEET_HINT.search(text):
        text = _LEET_WORD.sub(lambda m: m.group().translate(_LEET), text)
    return text, index


def views(low: str, table: FoldTable) -> Iterator[View]:
    """``low`` itself, then its folded spelling if that differs, then the folded spelling reversed if it
    holds a reversed keyword; each with a map from its spans to spans of ``low``."""
    yield low, _identity
    text, index = fold(low, table)
    back = _identity if index is None else _through(index)
    if text != low:
        yield text, back
    if _REVERSED.search(text):
        size = len(text)
        yield text[::-1], lambda span: back((size - span[1], size - span[0]))
