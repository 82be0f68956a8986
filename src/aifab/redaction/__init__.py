"""Detectors of personal data and secrets in text, and redaction with them.

The gateway's guardrails act on their findings (flag, redact, block; on a stream, holding back only what
could still become a finding); the audit log and the fine-tuning datasets store text redacted by the same
detectors. They sit in the foundations, below every block that uses them."""

from __future__ import annotations

from collections.abc import Sequence

from aifab.redaction.pii import PiiGuard
from aifab.redaction.protocol import Finding, Guard, StreamGuard
from aifab.redaction.rules import apply
from aifab.redaction.secrets import SecretsGuard


class Redactor:
    """Replaces every span any of ``guards`` finds (by default every PII and secret detector) by its
    placeholder: ``Redactor()("mail ann@example.com")`` gives ``"mail [EMAIL]"``."""

    def __init__(self, guards: Sequence[Guard] | None = None) -> None:
        self.guards = list(guards) if guards is not None else [PiiGuard(), SecretsGuard()]

    def __call__(self, text: str) -> str:
        return apply(text, [f for g in self.guards for f in g.scan(text)])


__all__ = ["Finding", "Guard", "PiiGuard", "Redactor", "SecretsGuard", "StreamGuard", "apply"]
