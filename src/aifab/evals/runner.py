"""Run a suite: every check through the harnesses, judged against its limits and a baseline, as one record.

A check whose harness fails with an aifab error (a collection that is gone, a model not registered) is
a failed check, named with its error, and the other checks still run: a CI log then says everything that
is wrong at once. Any other exception is a bug and ends the run."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aifab.errors import AifabError, InvalidRequest
from aifab.evals.judge import Row, judge
from aifab.evals.protocol import Harnesses, Measured
from aifab.evals.suite import Suite
from aifab.registry.package import sha256_of

# (check id, items done, items in all or None); called with 0 done as each check starts
OnProgress = Callable[[str, int, int | None], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class EvalRun:
    """One run of a suite, as stored and as ``--json`` prints it (a baseline file is this JSON)."""

    id: str
    suite: str
    started_at: datetime
    finished_at: datetime
    passed: bool
    config: dict[str, Any]  # the parsed suite
    hashes: dict[str, Any]  # {"suite": sha256, "files": {path: sha256}, "inputs": {check: what it measured}}
    metrics: dict[str, dict[str, float]]  # check id -> the harness's metrics
    verdicts: list[Row] = field(default_factory=list)
    baseline: str | None = None  # what it was compared with: "run ID" or a file's path
    seconds: dict[str, float] = field(default_factory=dict)  # check id -> wall time of its harness

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.verdicts if r.failed]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "suite": self.suite, "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat(), "passed": self.passed, "baseline": self.baseline,
                "config": self.config, "hashes": self.hashes, "metrics": self.metrics,
                "verdicts": [r.to_dict() for r in self.verdicts], "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalRun:
        return cls(id=data["id"], suite=data["suite"], started_at=datetime.fromisoformat(data["started_at"]),
                   finished_at=datetime.fromisoformat(data["finished_at"]), passed=bool(data["passed"]),
                   config=data["config"], hashes=data["hashes"], metrics=data["metrics"],
                   verdicts=[Row.from_dict(r) for r in data["verdicts"]], baseline=data.get("baseline"),
                   seconds=data.get("seconds") or {})


@dataclass
class Baseline:
    """Metrics to compare with, per check id, and where they came from."""

    label: str
    metrics: dict[str, dict[str, float]]

    @classmethod
    def of_run(cls, run: EvalRun) -> Baseline:
        return cls(f"run {run.id}", run.metrics)

    @classmethod
    def from_file(cls, path: Path) -> Baseline:
        """A file an earlier ``aifab eval run --json`` wrote."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"cannot read the baseline {path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"the baseline {path} is not JSON: {exc.msg} (line {exc.lineno})") from None
        metrics = data.get("metrics") if isinstance(data, dict) else None
        if not isinstance(metrics, dict) or not all(isinstance(v, dict) for v in metrics.values()):
            raise InvalidRequest(f"the baseline {path} has no per-check 'metrics': give a file that "
                                 "`aifab eval run --json` wrote")
        return cls(str(path), metrics)


def run_suite(suite: Suite, suite_sha256: str, harnesses: Harnesses, *, baseline: Baseline | None = None,
              on_progress: OnProgress | None = None, clock: Callable[[], datetime] = utcnow,
              timer: Callable[[], float] = time.perf_counter) -> EvalRun:
    """Run every check of ``suite`` (retrieval, then answers, then task checks, each in file order) and judge it."""
    started = clock()
    files = {written: sha256_of([path]) for written, path in suite.files().items()}
    metrics: dict[str, dict[str, float]] = {}
    inputs: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    rows: list[Row] = []
    for check in suite.checks:
        def progress(done: int, total: int | None, check_id: str = check.id) -> None:
            if on_progress:
                on_progress(check_id, done, total)

        progress(0, None)
        t0 = timer()
        try:
            measured: Measured = getattr(harnesses, check.kind)(check, progress)
        except AifabError as exc:
            rows += judge(check, None, error=exc.message)
        else:
            metrics[check.id], inputs[check.id] = measured.metrics, measured.inputs
            rows += judge(check, measured.metrics, baseline.metrics.get(check.id) if baseline else None)
        seconds[check.id] = timer() - t0
    return EvalRun(
        id=f"eval-{uuid.uuid4().hex[:16]}", suite=suite.name, started_at=started, finished_at=clock(),
        passed=not any(r.failed for r in rows), config=suite.to_dict(),
        hashes={"suite": suite_sha256, "files": files, "inputs": inputs, "root": str(suite.root())},
        metrics=metrics, verdicts=rows,
        baseline=baseline.label if baseline else None, seconds=seconds,
    )
