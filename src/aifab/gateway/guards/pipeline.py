"""The guardrail pipeline: which guard runs on which side with which action, per ``GuardrailSettings``.

Input: every text of a request is scanned by each guard whose action is not "off"; "redact" replaces the
spans, "flag" only reports, "block" refuses the request. Injection findings below their guard's threshold
are only flagged, whatever the action. Output: see ``stream.OutputGuard``. Scanning is synchronous and
CPU-bound; the default set stays under a few milliseconds for a typical request (benchmarks/guardrails.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

from aifab.config import GuardrailSettings
from aifab.gateway.guards.injection import InjectionGuard
from aifab.gateway.guards.stream import (
    Check,
    Emit,
    OutputCheck,
    OutputGuard,
    PassThrough,
    first_block,
    verdicts,
)
from aifab.gateway.protocol import Action, Verdict
from aifab.redaction import Redactor
from aifab.redaction.pii import PiiGuard
from aifab.redaction.protocol import Finding, Guard, StreamGuard
from aifab.redaction.rules import apply
from aifab.redaction.secrets import SecretsGuard


@runtime_checkable
class Scored(Protocol):
    """A guard whose findings can be too weak to act on (``InjectionGuard``)."""

    def strong(self, findings: list[Finding]) -> bool: ...


@dataclass(frozen=True)
class InputResult:
    """``texts``: the request's texts, redacted where an action says so; ``verdicts``: one per
    (guard, category, action); ``blocked``: the first blocking verdict, if any."""

    texts: list[str]
    verdicts: list[Verdict]
    blocked: Verdict | None = None


def default_guards() -> list[Guard]:
    return [PiiGuard(), SecretsGuard(), InjectionGuard()]


def _checks(settings: GuardrailSettings, stage: str, guards: Sequence[Guard]) -> list[Check]:
    if not settings.enabled:
        return []
    # no output_injection setting: injection is checked on input only
    actions = {g.kind: getattr(settings, f"{stage}_{g.kind}", "off") for g in guards}
    return [(g, cast(Action, actions[g.kind])) for g in guards if actions[g.kind] != "off"]


def _stream_checks(checks: list[Check]) -> list[OutputCheck]:
    """Output checks need guards that say what a stream must hold back (``StreamGuard.watch``)."""
    for guard, _ in checks:
        if not callable(getattr(guard, "watch", None)):
            raise TypeError(f"the guard '{guard.name}' cannot check output: it has no watch() method")
    return [(cast(StreamGuard, g), a) for g, a in checks]


class Guardrails:
    """Built once at start-up from settings. With ``enabled=False`` (or every action "off") ``check_input``
    returns its argument and ``output_stream`` a pass-through, so the per-request cost is one call."""

    def __init__(self, settings: GuardrailSettings, guards: Sequence[Guard] | None = None) -> None:
        self.settings = settings
        self.guards = list(guards) if guards is not None else default_guards()
        self._input = _checks(settings, "input", self.guards)
        self._output = _stream_checks(_checks(settings, "output", self.guards))
        self._redact = Redactor([g for g in self.guards if g.kind in ("pii", "secrets")])
        self._strong = {id(g): isinstance(g, Scored) for g in self.guards}

    def check_input(self, texts: list[str]) -> InputResult:
        """Scan each text (message contents, a prompt, embeddings inputs); stops at the first blocked text."""
        if not self._input:
            return InputResult(texts, [])
        out: list[str] = []
        tally: Counter[tuple[str, str, Action]] = Counter()
        for text in texts:
            redact: list[Finding] = []
            blocked = False
            for guard, action in self._input:
                findings = guard.scan(text)
                if not findings:
                    continue
                if action != "flag" and self._strong[id(guard)] and not cast(Scored, guard).strong(findings):
                    action = "flag"
                tally.update((guard.name, f.category, action) for f in findings)
                blocked = blocked or action == "block"
                if action == "redact":
                    redact.extend(findings)
            out.append(apply(text, redact) if redact else text)
            if blocked:
                break
        found = verdicts(tally.items(), "input")
        return InputResult(out + texts[len(out):], found, first_block(found))

    @property
    def checks_output(self) -> bool:
        """Whether any output check is on (otherwise answers pass the gateway as they are)."""
        return bool(self._output)

    def setting(self, verdict: Verdict) -> str:
        """The setting that chose ``verdict``'s action, as written in aifab.toml (``gateway.guardrails.…``)."""
        kind = next((g.kind for g in self.guards if g.name == verdict.guard), verdict.guard)
        return f"gateway.guardrails.{verdict.stage}_{kind}"

    def refusal(self, verdict: Verdict) -> str:
        """What a client whose request was blocked is told: which check, and the setting that changes it."""
        return (f"the request was blocked by the guardrails ({verdict.guard}: {verdict.category}); the setting "
                f"{self.setting(verdict)} (\"{verdict.action}\") decides this: \"flag\" lets such requests through "
                "and records them")

    def check_output(self, text: str) -> Emit:
        """A whole (non-streamed) answer, through the same output guard a stream gets."""
        guard = self.output_stream()
        head = guard.feed(text)
        tail = guard.finish()
        blocked = head.blocked or tail.blocked
        return Emit("" if blocked else head.text + tail.text, head.verdicts + tail.verdicts, blocked)

    def output_stream(self) -> OutputGuard:
        """A fresh output guard for one response (streamed or not)."""
        if not self._output:
            return PassThrough()
        return OutputGuard(self._output, self.settings.max_hold_chars)

    def redact(self, text: str) -> str:
        """Every PII and secret span replaced by its placeholder, whatever the actions and ``enabled`` say:
        what the audit log stores."""
        return self._redact(text)
