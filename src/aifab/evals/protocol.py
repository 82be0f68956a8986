"""The seam between an eval suite and the harnesses that measure its checks.

The suite runner only calls these three methods, so where a check runs is the implementation's choice:
:class:`aifab.evals.local.LocalHarnesses` runs them in this process; one that asks a running server to
run them would let ``aifab eval run`` work while ``aifab up`` holds the data directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aifab.evals.suite import AnswersCheck, RetrievalCheck, TaskCheck

Progress = Callable[[int, int | None], None]  # (items done, items in all or None)


@dataclass
class Measured:
    """A check's metrics, and what they were measured on (collection version, model and dataset hashes)."""

    metrics: dict[str, float]
    inputs: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per question, where the harness has them


class Harnesses(Protocol):
    def retrieval(self, check: RetrievalCheck, progress: Progress) -> Measured: ...

    def answers(self, check: AnswersCheck, progress: Progress) -> Measured: ...

    def task(self, check: TaskCheck, progress: Progress) -> Measured: ...
