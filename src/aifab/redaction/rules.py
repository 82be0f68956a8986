"""What the PII and secrets guards share: a table of regex rules, each with a cheap literal pre-check, an
optional validator (checksum, entropy) and an optional span extension, scanned one rule at a time.

Patterns are written so that a failed match backtracks a bounded number of steps (no nested unbounded
quantifiers): the gateway scans on the event loop and a 64 KB adversarial input must stay linear."""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from aifab.redaction.partial import Partials
from aifab.redaction.protocol import Finding

Validator = Callable[[re.Match[str]], bool]
Extender = Callable[[str, re.Match[str]], int]


Where = Literal["text", "lower", "digits", "at"]
Span = tuple[int, int, int]  # start, end, most digits in one anchor hit inside


@dataclass(frozen=True)
class Rule:
    """One detector line. ``where``: "text" scans the text, "lower" its lower-cased copy (the pattern is
    written in lower case), "digits" only around runs of ≥ 6 digits and separators, "at" only around "@".
    ``needles`` (lower case): the rule runs only when one occurs in the lower-cased text. ``group``: the part
    of the match that is the sensitive value (``api_key=`` stays readable). ``min_digits`` ("digits" only):
    skip digit runs with fewer digits.

    Speed: a "text"/"lower" pattern should start with a literal (put a boundary look-behind after the first
    character, not before it), so that ``re`` skips ahead with a fast literal search instead of trying the
    pattern at every position."""

    category: str
    pattern: re.Pattern[str]
    placeholder: str
    needles: tuple[str, ...] = ()
    valid: Validator | None = None
    extend: Extender | None = None
    group: int | str = 0
    where: Where = "text"
    min_digits: int = 0


# where -> (what marks a place worth a look, how far before it a match may start)
_ANCHORS: dict[str, tuple[re.Pattern[str], int]] = {
    "digits": (re.compile(r"\d[\d \-./()]{4,}\d"), 4),  # "+1 (", "AB 12 34 56 C", "X-1234567-L"
    "at": (re.compile(r"@"), 65),  # an e-mail's local part is at most 64 characters
}
_SPACE = re.compile(r"\s")


class RegexGuard:
    """A ``Guard`` over a rule table. Overlapping findings keep the earliest, then the longest, so one span
    is counted (and redacted) once."""

    name: str
    kind: Literal["pii", "secrets", "injection"]
    rules: tuple[Rule, ...]

    def scan(self, text: str) -> list[Finding]:
        if not text:
            return []
        low = lower(text)
        whole = [(0, len(text), len(text))]
        spans: dict[Where, list[Span]] = {"text": whole, "lower": whole}
        found: list[Finding] = []
        for rule in self.rules:
            if rule.needles and not any(n in low for n in rule.needles):
                continue
            if rule.where not in spans:
                spans[rule.where] = _regions(text, *_ANCHORS[rule.where])
            found.extend(_run(rule, low if rule.where == "lower" else text, spans[rule.where]))
        return resolve_overlaps(found)

    def watch(self, text: str, start: int = 0) -> tuple[list[Finding], int]:
        """For a stream: the findings that end after ``start`` and where a finding could still begin once
        more text arrives (``partial.Partials``)."""
        return self._partials.watch(text, start, self.scan)

    @functools.cached_property
    def _partials(self) -> Partials:
        return Partials(self.rules)


def _regions(text: str, anchor: re.Pattern[str], before: int) -> list[Span]:
    """Merged windows around each hit of ``anchor``; each ends at a whitespace at least 4 characters past
    the hit (or at the end of the text), so a look-ahead at a window's end sees what it would see in the
    whole text, and a match that runs on past the hit (a domain, a check letter) stays whole."""
    out: list[Span] = []
    for m in anchor.finditer(text):
        n = len(digits(m.group()))
        if out and m.end() + 4 <= out[-1][1]:
            out[-1] = (out[-1][0], out[-1][1], max(n, out[-1][2]))  # already inside the last window
            continue
        start = max(m.start() - before, 0)
        space = _SPACE.search(text, m.end() + 4, m.end() + 512)
        end = space.start() if space else min(len(text), m.end() + 512)
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]), max(n, out[-1][2]))
        else:
            out.append((start, end, n))
    return out


def _run(rule: Rule, text: str, spans: list[Span]) -> Iterable[Finding]:
    taken = 0
    for lo, hi, n in spans:
        if n < rule.min_digits:
            continue
        pos = max(lo, taken)
        while pos < hi and (m := rule.pattern.search(text, pos, hi)) is not None:
            if m.start() < taken or (rule.valid is not None and not rule.valid(m)):
                pos = m.start() + 1  # a shorter match may start inside a rejected one
                continue
            start, end = m.span(rule.group)
            if rule.extend is not None:
                end = rule.extend(text, m)
            pos = taken = max(end, m.start() + 1)
            yield Finding(start, end, rule.category, rule.placeholder)


def lower(text: str) -> str:
    """``text.lower()`` with the same length, so that spans found in it are spans of ``text``."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)  # "İ" and a few others grow


def resolve_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Sorted, non-overlapping findings: on overlap the earlier (then longer) one wins."""
    kept: list[Finding] = []
    for f in sorted(findings, key=lambda f: (f.start, f.start - f.end)):
        if not kept or f.start >= kept[-1].end:
            kept.append(f)
    return kept


def apply(text: str, findings: Iterable[Finding]) -> str:
    """``text`` with every finding's span replaced by its placeholder (overlaps merged first)."""
    parts: list[str] = []
    pos = 0
    for f in resolve_overlaps(findings):
        parts.append(text[pos:f.start])
        parts.append(f.placeholder)
        pos = f.end
    if not parts:
        return text
    parts.append(text[pos:])
    return "".join(parts)


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values()) if n else 0.0


_NON_DIGIT = re.compile(r"\D+")


def digits(value: str) -> str:
    return _NON_DIGIT.sub("", value)
