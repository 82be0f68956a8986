"""The seam of the detectors over text: a ``Guard`` returns ``Finding``s; a ``StreamGuard`` also says what a
stream must hold back. The gateway's guardrails decide what to do with findings; the audit log and the
fine-tuning datasets use the same detectors to redact what they store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class Finding:
    """A span of text a guard matched, with the category and the placeholder that replaces it on redact."""

    start: int
    end: int
    category: str
    placeholder: str = "[REDACTED]"


class Guard(Protocol):
    """A detector over text. The pipeline decides what to do with its findings."""

    name: str
    kind: Literal["pii", "secrets", "injection"]

    def scan(self, text: str) -> list[Finding]: ...


class StreamGuard(Guard, Protocol):
    """A guard that can check a stream: besides the findings, it says from where the text could still become
    a finding once more arrives, so that only that tail is held back."""

    def watch(self, text: str, start: int = 0) -> tuple[list[Finding], int]:
        """The findings in ``text`` that end after ``start``, and the index (at or after ``start``) where the
        earliest possible future finding begins (``len(text)`` if none can)."""
        ...
