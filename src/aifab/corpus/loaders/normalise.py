"""Text normalisation shared by every loader, so that the same words give the same text whatever the format.

Four strengths, one per kind of block:

- ``clean``: for everything, code included. NFC, one line-ending convention (``\\n``), control characters
  removed (``\\n`` and ``\\t`` kept; form feed and vertical tab become line breaks), invisible characters
  (soft hyphen, zero-width space, BOM) removed, typographic ligatures (``ﬁ``) spelt out. Whitespace is
  left exactly as it was, which is what code needs.
- ``normalise_lines``: ``clean``, then runs of spaces collapsed and trailing whitespace trimmed on each
  line; the line structure stays (tables, JSON, CSV rows, list items).
- ``normalise_line``: one line: every run of whitespace, line breaks included, becomes one space (headings,
  table cells).
- ``normalise_prose``: a paragraph of soft-wrapped lines joined into one line, with words broken across
  lines by a hyphen put back together (see ``join_wrapped``).
"""

from __future__ import annotations

import re
import unicodedata

# One pass over the text finds every character that ``clean`` replaces: C0/C1 controls except \t, \n
# and \r (handled first, with str.replace), DEL, soft hyphen, zero-width space, word joiner, BOM, line
# and paragraph separators, and the ligatures.
_SPECIAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b\u2028\u2029\u2060\ufeff\ufb00-\ufb06]")
_REPLACEMENTS = {
    "\x0b": "\n", "\x0c": "\n", "\x85": "\n", "\u2028": "\n", "\u2029": "\n",
    "ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st",
}
_WIDE_SPACES = "\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
_SPACES = re.compile(f"[ {_WIDE_SPACES}]{{2,}}|[{_WIDE_SPACES}]")
_HYPHEN_BREAK = re.compile(r"(\S*?)([^\W\d_]+)-$")
_LEADING_LETTERS = re.compile(r"[^\W\d_]*")

# A line-end hyphen after one of these is part of a compound ("self-\ncontained" stays "self-contained").
COMPOUND_PREFIXES = frozenset({"all", "ex", "half", "non", "self", "well"})


def clean(text: str) -> str:
    """NFC, ``\\n`` line endings, no control or invisible characters, ligatures spelt out; whitespace kept."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SPECIAL.sub(_replacement, text)
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return text


def _replacement(match: re.Match[str]) -> str:
    return _REPLACEMENTS.get(match.group(), "")


def normalise_lines(text: str) -> str:
    """``clean`` plus, on each line, runs of spaces collapsed and trailing whitespace trimmed."""
    lines = [line.rstrip() for line in _SPACES.sub(" ", clean(text)).split("\n")]
    return "\n".join(lines).strip("\n")


def normalise_line(text: str) -> str:
    """Everything on one line: each run of whitespace, line breaks included, becomes one space."""
    return " ".join(clean(text).split())


def normalise_prose(text: str) -> str:
    """A paragraph as one line: soft-wrapped lines joined, hyphenated line breaks repaired."""
    lines = [line.strip() for line in _SPACES.sub(" ", clean(text)).split("\n")]
    return join_wrapped([line for line in lines if line])


def join_wrapped(lines: list[str]) -> str:
    """Join soft-wrapped lines with spaces, repairing words that a typesetter broke with a hyphen.

    A line ending in ``letters-`` is joined to the next line *without* a space. The hyphen is dropped
    ("infor-" + "mation" → "information") only when all of these hold, and kept otherwise
    ("Jean-" + "Paul", "state-of-" + "the-art", "e-" + "mail", "self-" + "contained"):

    - the next line starts with a lowercase letter, and the fragments on both sides have at least two
      letters (typesetters never leave fewer; TeX's minimum is two before and three after the break);
    - the word before the hyphen is all letters, not itself hyphenated, and not a compound prefix
      (``COMPOUND_PREFIXES``).

    Without a dictionary a real compound that happens to break at its hyphen ("light-" + "weight") loses
    its hyphen; that is the accepted cost of the rule.
    """
    if not lines:
        return ""
    parts = [lines[0]]
    for line in lines[1:]:
        previous = parts[-1]
        match = _HYPHEN_BREAK.search(previous) if previous.endswith("-") else None
        if match is None:
            parts.append(" ")
            parts.append(line)
        elif _is_broken_word(match, line):
            parts[-1] = previous[:-1]
            parts.append(line)
        else:
            parts.append(line)
    return "".join(parts)


def _is_broken_word(match: re.Match[str], next_line: str) -> bool:
    prefix, word = match.group(1), match.group(2)
    continuation = _LEADING_LETTERS.match(next_line)
    tail = continuation.group(0) if continuation else ""
    return (
        not any(char.isalnum() or char == "-" for char in prefix)
        and len(word) >= 2
        and len(tail) >= 2
        and tail[0].islower()
        and word.lower() not in COMPOUND_PREFIXES
    )
