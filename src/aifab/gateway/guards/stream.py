"""Output checks that work on a stream: text leaves as soon as it can no longer be part of a finding.

Each ``feed`` looks at what is held (plus the last released characters as left context) and releases
everything before the earliest place where a detector's match could still begin: a partial match that more
text could complete, or a finished match that ends within a few characters of the end (more digits, or the
character a look-ahead is waiting for, could change it); see ``partial.Partials``. So
prose flows at the engine's cadence (the word in progress is typically what is held: it could still grow
into an e-mail address), while a secret or card number split across chunks is scanned whole and redacted
whole, and a ``block`` stops the stream before the match leaves.

What bounds the hold-back: the longest partial match of any rule. For most rules that is a few dozen
characters; an assigned secret's value can run to 4 KB, a JWT to 16 KB, and an unterminated private-key block
is held whole until its END line or 16 KB. ``max_hold`` (``gateway.guardrails.max_hold_chars``) caps it: past
that, the oldest held text is released so a stream never stalls: a finding across the cut is redacted up to
it, but a partial match that has not become a finding yet, and whatever follows the cut, can leak. The last 64 released characters stay as left context for the next scan
(look-behinds, "api_key = " before a value)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from aifab.gateway.protocol import Action, Verdict
from aifab.redaction.partial import PEEK
from aifab.redaction.protocol import Finding, Guard, StreamGuard
from aifab.redaction.rules import apply

_CONTEXT = 64
# Looking at held text costs time in its length, so while a long partial match is held (a key block) it is
# looked at again only once it has grown by 1/_BACKOFF: linear time in all, and text that turns out not to
# be a match waits at most that much longer.
_SMALL, _BACKOFF = 256, 8
MAX_HOLD = 17408  # a 16 KB private-key block or JWT, plus its surroundings


@dataclass(frozen=True)
class Emit:
    """What may go to the client now, the verdicts new since the last emit, and the block that stops the
    stream (set on the emit that fired it and on every later one)."""

    text: str
    verdicts: list[Verdict] = field(default_factory=list)
    blocked: Verdict | None = None


Check = tuple[Guard, Action]
OutputCheck = tuple[StreamGuard, Action]
Stage = Literal["input", "output"]


def verdicts(tally: Iterable[tuple[tuple[str, str, Action], int]], stage: Stage) -> list[Verdict]:
    """One verdict per (guard, category, action) with the count as detail, never the matched text."""
    return [Verdict(guard, category, action, stage, f"{category}×{n}") for (guard, category, action), n in tally]


def first_block(found: list[Verdict]) -> Verdict | None:
    return next((v for v in found if v.action == "block"), None)


class OutputGuard:
    """``feed`` each chunk of model output, ``finish`` at the end; each returns an ``Emit``. Text without
    findings comes out byte-identical once all emits are joined."""

    def __init__(self, checks: Sequence[OutputCheck], max_hold: int = MAX_HOLD) -> None:
        # "flag" never changes the text, so only redact and block checks hold anything back; flag checks
        # count what is released (a match up to 64 characters long is counted once, whole)
        self._holding = [(g, a) for g, a in checks if a != "flag"]
        self._flagging = [(g, a) for g, a in checks if a == "flag"]
        self._max_hold = max_hold
        self._buf = ""
        self._ctx = ""
        self._fresh = 0  # characters received since the held text was last looked at
        self._released = 0  # characters released so far
        self._flag_mark = 0  # flag findings ending at or before this stream position have been counted
        self.blocked: Verdict | None = None
        self.tally: Counter[tuple[str, str, Action]] = Counter()

    @property
    def held(self) -> int:
        """Characters received and not yet released."""
        return len(self._buf)

    def summary(self) -> list[Verdict]:
        """Every verdict of the stream so far, one per (guard, category, action), for the audit log."""
        return verdicts(self.tally.items(), "output")

    def feed(self, text: str) -> Emit:
        if self.blocked is not None:
            return Emit("", [], self.blocked)
        self._buf += text
        self._fresh += len(text)
        if self._fresh * _BACKOFF < len(self._buf) - _SMALL:
            return Emit("")  # a long partial match is held: look again once it has grown by an eighth
        self._fresh = 0
        return self._release(final=False)

    def finish(self) -> Emit:
        if self.blocked is not None:
            return Emit("", [], self.blocked)
        return self._release(final=True) if self._buf else Emit("")

    def _release(self, final: bool) -> Emit:
        off = len(self._ctx)
        text = self._ctx + self._buf
        found: list[tuple[Finding, str, Action]] = []
        if final:
            for guard, action in self._holding:
                found.extend((f, guard.name, action) for f in guard.scan(text) if f.end > off)
            cut = len(self._buf)
        else:
            cut = self._cut(text, off, found)
            if cut == 0:
                return Emit("")
        done = [(f, g, a) for f, g, a in found if f.end <= cut + off]
        done += self._flags(text, len(text) if final else len(text) - PEEK)
        if not done:  # prose: nothing to count or redact
            return Emit(self._advance(cut))
        tally = Counter((g, f.category, a) for f, g, a in done)
        self.tally.update(tally)
        new = verdicts(tally.items(), "output")
        self.blocked = first_block(new)
        if self.blocked is not None:
            return Emit("", new, self.blocked)
        spans = [Finding(max(f.start - off, 0), f.end - off, f.category, f.placeholder)
                 for f, _, a in done if a == "redact"]
        released = self._advance(cut)
        return Emit(apply(released, spans) if spans else released, new)

    def _cut(self, text: str, off: int, found: list[tuple[Finding, str, Action]]) -> int:
        """How much of the held text may go now; fills ``found`` with the redact/block findings."""
        hold = len(text)
        for guard, action in self._holding:
            findings, pending = guard.watch(text, off)
            found.extend((f, guard.name, action) for f in findings)
            hold = min(hold, pending)
        if found:  # a finding's own extension (a key block's body) may still grow
            hold = min([hold, *(f.start for f, _, _ in found if f.end > len(text) - PEEK)])
        cut = max(hold - off, 0)
        forced = len(self._buf) - self._max_hold
        if forced > cut:  # the cap: a finding across the cut is redacted up to it, the rest goes on
            found[:] = [(_clip(f, forced + off), g, a) for f, g, a in found]
            return forced
        return max(_clear_of(cut + off, [f for f, _, _ in found]) - off, 0)

    def _flags(self, text: str, upto: int) -> list[tuple[Finding, str, Action]]:
        """The flag checks' findings that end by ``upto`` (past the last few characters, which could still
        extend a match) and were not counted before: counted once, whole, whether released yet or not."""
        if not self._flagging:
            return []
        base = self._released - len(self._ctx)  # where ``text`` starts in the whole stream
        out: list[tuple[Finding, str, Action]] = [
            (f, guard.name, action) for guard, action in self._flagging for f in guard.scan(text)
            if f.end <= upto and base + f.end > self._flag_mark]
        self._flag_mark = max(self._flag_mark, base + upto)
        return out

    def _advance(self, cut: int) -> str:
        """Release the first ``cut`` held characters (as received: redaction is the caller's)."""
        released, self._buf = self._buf[:cut], self._buf[cut:]
        self._ctx = (self._ctx + released)[-_CONTEXT:]
        self._released += cut
        return released


def _clip(f: Finding, cut: int) -> Finding:
    return Finding(f.start, cut, f.category, f.placeholder) if f.start < cut < f.end else f


def _clear_of(cut: int, findings: list[Finding]) -> int:
    """Move ``cut`` back until no finding straddles it."""
    moved = True
    while moved:
        moved = False
        for f in findings:
            if f.start < cut < f.end:
                cut, moved = f.start, True
    return cut


class PassThrough(OutputGuard):
    """The output guard when no output check is on: releases every chunk as it comes, scans nothing."""

    def __init__(self) -> None:
        super().__init__(())

    def feed(self, text: str) -> Emit:
        return Emit(text)

    def finish(self) -> Emit:
        return Emit("")
