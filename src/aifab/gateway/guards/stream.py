"""Output checks that work on a stream: text is held back by a sliding window so that a match split across
chunks is still whole when it is scanned, then released redacted.

Release rule: everything up to ``window`` characters before the end, cut back to the last whitespace (a
token in progress is held whole, up to ``max_token`` characters; a longer one is cut where the window
says), never inside a finding, and in steps of at least ``window // 4`` characters. So text leaves only
once ``window`` characters after it have been seen, and a match shorter than the window is always complete
before it is released. What stays held is at most ``window + max_token`` characters plus one finding (a
private-key block: 16 KB) plus the last chunk. The last 64 released characters stay as left context for the
next scan (look-behinds, "api_key = " before a value). Limit: a match longer than the window that arrives
with no whitespace in front of it for ``max_token`` characters can be released in part."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from aifab.gateway.guards.rules import apply
from aifab.gateway.protocol import Action, Finding, Guard, Verdict

_CONTEXT = 64


@dataclass(frozen=True)
class Emit:
    """What may go to the client now, the verdicts new since the last emit, and the block that stops the
    stream (set on the emit that fired it and on every later one)."""

    text: str
    verdicts: list[Verdict] = field(default_factory=list)
    blocked: Verdict | None = None


Check = tuple[Guard, Action]
Stage = Literal["input", "output"]


def verdicts(tally: Iterable[tuple[tuple[str, str, Action], int]], stage: Stage) -> list[Verdict]:
    """One verdict per (guard, category, action) with the count as detail, never the matched text."""
    return [Verdict(guard, category, action, stage, f"{category}×{n}") for (guard, category, action), n in tally]


def first_block(found: list[Verdict]) -> Verdict | None:
    return next((v for v in found if v.action == "block"), None)


class OutputGuard:
    """``feed`` each chunk of model output, ``finish`` at the end; each returns an ``Emit``. Text without
    findings comes out byte-identical once all emits are joined."""

    def __init__(self, checks: Sequence[Check], window: int, max_token: int = 1024) -> None:
        self._checks = checks
        self._window = window
        self._max_token = max_token
        self._step = max(1, window // 4)
        self._buf = ""
        self._ctx = ""
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
        cut = self._cut(self._buf)
        # a scan costs the same for 1 character or 100: wait until a few words can go
        return self._release(cut, final=False) if cut >= self._step else Emit("")

    def finish(self) -> Emit:
        if self.blocked is not None:
            return Emit("", [], self.blocked)
        return self._release(len(self._buf), final=True) if self._buf else Emit("")

    def _cut(self, buf: str) -> int:
        limit = len(buf) - self._window
        if limit <= 0:
            return 0
        lo = max(0, limit - self._max_token)
        space = max(buf.rfind(" ", lo, limit), buf.rfind("\n", lo, limit), buf.rfind("\t", lo, limit))
        if space >= 0:
            return space + 1
        return limit if limit >= self._max_token else 0

    def _release(self, cut: int, final: bool) -> Emit:
        off = len(self._ctx)
        text = self._ctx + self._buf
        found: list[tuple[Finding, str, Action]] = []
        for guard, action in self._checks:
            found.extend((f, guard.name, action) for f in guard.scan(text) if f.end > off)
        if not final:
            cut = max(_clear_of(cut + off, [f for f, _, _ in found]) - off, 0)
        done = [(f, g, a) for f, g, a in found if f.end <= cut + off]
        tally = Counter((g, f.category, a) for f, g, a in done)
        self.tally.update(tally)
        new = verdicts(tally.items(), "output")
        self.blocked = first_block(new)
        if self.blocked is not None:
            return Emit("", new, self.blocked)
        released = self._buf[:cut]
        spans = [Finding(max(f.start - off, 0), f.end - off, f.category, f.placeholder)
                 for f, _, a in done if a == "redact"]
        self._ctx = (self._ctx + released)[-_CONTEXT:]
        self._buf = self._buf[cut:]
        return Emit(apply(released, spans) if spans else released, new)


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
        super().__init__((), 0)

    def feed(self, text: str) -> Emit:
        return Emit(text)

    def finish(self) -> Emit:
        return Emit("")
