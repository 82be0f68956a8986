"""Where a stream must hold back: the earliest place at which a rule's match could still begin.

The ``regex`` package's ``partial=True`` search reports a match that runs into the end of the text, one that
more text could complete. A finished match that ends within ``PEEK`` characters of the end counts too,
valid or not: more digits can pass a checksum this run fails, and a look-ahead that saw the end of the text
may see a character that rules the match out.

Speed: a partial search costs a few microseconds a rule even on a short text, and most rules cannot start
anywhere in a piece of prose. So each rule's possible first characters (up to three: ``sk-``, ``eyJ``,
``---``; else the class of the first one: digits, "+" or "(" for a phone number) are read off its parsed
pattern once, and a rule is searched only from the first place where one of them occurs, or where the text
ends in the beginning of one; a rule that can start with any letter (an e-mail's local part) is always
searched. The full scan for findings runs only when a finished match was seen
before the hold-back point: in prose, almost never."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any

import regex

from aifab.redaction.protocol import Finding

if TYPE_CHECKING:
    from aifab.redaction.rules import Rule

PEEK = 4  # the longest look-ahead at a rule's end ("[.,]\d" after a number) plus a margin
_HEAD = 3  # how many leading characters of a pattern are read off
_ZERO_WIDTH = (C.ASSERT, C.ASSERT_NOT, C.AT)
_SMALL_SET = 6  # a character class of at most this many literals is expanded


def heads(pattern: str, flags: int = 0) -> frozenset[str] | None:
    """The strings (1-3 characters) one of which every match of ``pattern`` starts with; None when a match
    can start with (almost) any character, or the pattern is too complex to say."""
    if flags & re.IGNORECASE:
        return None
    found = _heads(list(_parser.parse(pattern)), _HEAD)
    return None if found is None or "" in found else frozenset(found)


def _heads(items: list[Any], room: int) -> set[str] | None:
    """The first ``room`` literal characters of a sequence of parsed items; a shorter string means "then
    anything"; None: cannot say."""
    if room == 0 or not items:
        return {""}
    (op, av), rest = items[0], items[1:]
    if op in _ZERO_WIDTH:
        return _heads(rest, room)
    if op is C.LITERAL:
        return _prefix({chr(av)}, _heads(rest, room - 1))
    if op is C.IN:
        chars = {chr(v) for o, v in av if o is C.LITERAL}
        if len(chars) != len(av) or len(chars) > _SMALL_SET:
            return {""}  # a range or a category: the head ends here
        return _prefix(chars, _heads(rest, room - 1))
    if op is C.SUBPATTERN:
        _, add, _, body = av
        return None if add & re.IGNORECASE else _heads(list(body) + rest, room)
    if op is C.BRANCH:
        out: set[str] = set()
        for branch in av[1]:
            got = _heads(list(branch) + rest, room)
            if got is None:
                return None
            out |= got
        return out
    if op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[0] >= 1:
        return _heads(list(av[2]), 1)  # the repeated item's first character, then anything
    return {""}


def _prefix(chars: set[str], tails: set[str] | None) -> set[str] | None:
    return None if tails is None else {c + t for c in chars for t in tails}


_CLASSES = {C.CATEGORY_DIGIT: r"\d", C.CATEGORY_SPACE: r"\s"}  # a word class would let every word in


def first_class(pattern: str, flags: int = 0) -> re.Pattern[str] | None:
    """A character class that the first character of every match of ``pattern`` belongs to (digits, "+"
    and "(" for a phone number; capitals for an IBAN); None when it would let most text in."""
    if flags & re.IGNORECASE:
        return None
    found = _firsts(list(_parser.parse(pattern)))
    return None if found is None or found[1] or not found[0] else re.compile("[" + "".join(sorted(found[0])) + "]")


Firsts = tuple[set[str], bool] | None  # (class fragments, whether the items can match nothing); None: any


def _firsts(items: list[Any]) -> Firsts:
    acc: set[str] = set()
    for item in items:
        got = _first_of(*item)
        if got is None:
            return None
        acc |= got[0]
        if not got[1]:
            return acc, False
    return acc, True


def _first_of(op: Any, av: Any) -> Firsts:
    if op in _ZERO_WIDTH:
        return set(), True
    if op is C.LITERAL:
        return {re.escape(chr(av))}, False
    if op is C.IN:
        frags = set()
        for o, v in av:
            if o is C.LITERAL:
                frags.add(re.escape(chr(v)))
            elif o is C.RANGE:
                frags.add(f"{re.escape(chr(v[0]))}-{re.escape(chr(v[1]))}")
            elif o is C.CATEGORY and v in _CLASSES:
                frags.add(_CLASSES[v])
            else:
                return None
        return frags, False
    if op is C.SUBPATTERN:
        return None if av[1] & re.IGNORECASE else _firsts(list(av[3]))
    if op is C.BRANCH:
        out: set[str] = set()
        empty = False
        for branch in av[1]:
            got = _firsts(list(branch))
            if got is None:
                return None
            out |= got[0]
            empty = empty or got[1]
        return out, empty
    if op in (C.MAX_REPEAT, C.MIN_REPEAT):
        got = _firsts(list(av[2]))
        return None if got is None else (got[0], got[1] or av[0] == 0)
    return None


Finder = Callable[[str, int], int]  # (text, start) -> the first place a match could begin, len(text) if none


class Heads:
    """Finds the first place where one of some heads occurs, or where the text ends in the beginning of one
    (what more text could turn into a head)."""

    def __init__(self, heads: frozenset[str]) -> None:
        self.any = re.compile("|".join(re.escape(h) for h in sorted(heads, key=len, reverse=True)))
        self.stubs = {h[:k] for h in heads for k in range(1, len(h))}
        self.longest = max((len(s) for s in self.stubs), default=0)

    def __call__(self, text: str, start: int) -> int:
        n = len(text)
        m = self.any.search(text, start)
        best = n if m is None else m.start()
        for k in range(self.longest, 0, -1):
            if start <= n - k < best and text[n - k:] in self.stubs:
                return n - k
        return best


class FirstChar:
    """Finds the first character of a class."""

    def __init__(self, cls: re.Pattern[str]) -> None:
        self.cls = cls

    def __call__(self, text: str, start: int) -> int:
        m = self.cls.search(text, start)
        return len(text) if m is None else m.start()


def _anywhere(text: str, start: int) -> int:
    return start


@dataclass
class _Group:
    """Rules that read the same text (as is, or lower-cased) and are found the same way, with one finder
    for all of them: in prose it finds nothing, and the whole group is passed over at the cost of one search."""

    lowered: bool
    find: Finder
    members: list[tuple[Any, Finder]]


class Partials:
    """The partial-match view of a rule table: each rule's pattern compiled by ``regex``, with its heads or,
    failing those, the class of its first character."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        kinds: dict[tuple[bool, str], list[tuple[Any, Any]]] = {}
        for r in rules:
            pattern, flags = r.pattern.pattern, r.pattern.flags
            head, first = heads(pattern, flags), first_class(pattern, flags)
            kind, key = ("head", head) if head is not None else ("first", first) if first is not None else ("any", None)
            kinds.setdefault((r.where == "lower", kind), []).append((regex.compile(pattern, flags), key))
        self.groups: list[_Group] = []
        for (lowered, kind), members in kinds.items():
            if kind == "head":
                group = _Group(lowered, Heads(frozenset().union(*(k for _, k in members))),
                               [(rx, Heads(k)) for rx, k in members])
            elif kind == "first":
                joined = re.compile("|".join(k.pattern for _, k in members))
                group = _Group(lowered, FirstChar(joined), [(rx, FirstChar(k)) for rx, k in members])
            else:
                group = _Group(lowered, _anywhere, [(rx, _anywhere) for rx, _ in members])
            self.groups.append(group)

    def watch(self, text: str, start: int, scan: Callable[[str], list[Finding]]) -> tuple[list[Finding], int]:
        """(findings ending after ``start``, where a finding could still begin). Matches are looked for from
        ``start`` only — the text before it was found not to be pending when less had arrived, and a match
        that reaches the end now would have reached the end then — with that text as look-behind."""
        from aifab.redaction.rules import lower

        low: str | None = None
        hold, finished = len(text), len(text)
        for group in self.groups:
            if group.lowered:
                low = lower(text) if low is None else low
            subject = low if group.lowered and low is not None else text
            if group.find(subject, start) >= hold:
                continue
            for rx, find in group.members:
                pos = find(subject, start)
                if pos < hold:
                    at, seen = _pending(rx, subject, pos, hold)
                    hold, finished = at, min(finished, seen)
        if finished >= hold:
            return [], hold  # nothing finished before the hold-back point: nothing to scan for
        return [f for f in scan(text) if f.end > start], hold


def _pending(rx: Any, text: str, pos: int, best: int) -> tuple[int, int]:
    """(the start of the first match of ``rx`` from ``pos`` that is partial or ends near the end, if before
    ``best``, else ``best``; the start of the first finished match passed over, else ``len(text)``). A finished
    match far from the end is passed over one position at a time, since a match that runs to the end may
    start inside it."""
    n = len(text)
    limit, finished = n - PEEK, n
    while pos < best:
        m = rx.search(text, pos, partial=True)
        if m is None or m.start() >= best:
            break
        if m.partial or m.end() > limit:
            return m.start(), finished
        finished = min(finished, m.start())
        pos = m.start() + 1
    return best, finished
