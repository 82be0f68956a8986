"""A fake of the eval harnesses: each check id measures what it is given, or raises, and every call is kept."""

from __future__ import annotations

from typing import Any

from aifab.evals.protocol import Measured, Progress


class FakeHarnesses:
    """``results`` maps a check id to its metrics (a dict) or to the exception its harness raises."""

    def __init__(self, results: dict[str, dict[str, float] | Exception]) -> None:
        self.results = results
        self.calls: list[str] = []

    def _measure(self, check: Any, progress: Progress) -> Measured:
        self.calls.append(check.id)
        result = self.results[check.id]
        if isinstance(result, Exception):
            raise result
        progress(1, 1)
        return Measured(dict(result), {"fake": check.id})

    retrieval = answers = task = _measure
