"""Eval runs kept in the state store (SQLite or PostgreSQL): every ``aifab eval run``, newest first."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from aifab.errors import NotFound
from aifab.evals.judge import Row
from aifab.evals.runner import EvalRun
from aifab.state import Database
from aifab.state.tables import EvalRunRow


class EvalRuns:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, run: EvalRun) -> None:
        with self.db.session() as s:
            s.add(EvalRunRow(
                id=run.id, suite=run.suite, started_at=run.started_at, finished_at=run.finished_at, passed=run.passed,
                baseline=run.baseline, config=run.config, hashes=run.hashes, metrics=run.metrics,
                verdicts=[r.to_dict() for r in run.verdicts], seconds=run.seconds,
            ))

    def get(self, run_id: str) -> EvalRun:
        with self.db.session() as s:
            row = s.get(EvalRunRow, run_id)
            if row is None:
                raise NotFound(f"no eval run '{run_id}' (see `aifab eval runs`)", param="id")
            return _run(row)

    def list(self, suite: str | None = None, limit: int = 50) -> list[EvalRun]:
        """The newest ``limit`` runs, of one suite or of all."""
        query = select(EvalRunRow).order_by(EvalRunRow.started_at.desc(), EvalRunRow.finished_at.desc()).limit(limit)
        if suite is not None:
            query = query.where(EvalRunRow.suite == suite)
        with self.db.session() as s:
            return [_run(row) for row in s.scalars(query)]

    def last(self, suite: str) -> EvalRun | None:
        runs = self.list(suite, limit=1)
        return runs[0] if runs else None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite hands back naive UTC times


def _run(row: EvalRunRow) -> EvalRun:
    return EvalRun(id=row.id, suite=row.suite, started_at=_aware(row.started_at), finished_at=_aware(row.finished_at),
                   passed=row.passed, config=row.config, hashes=row.hashes, metrics=row.metrics,
                   verdicts=[Row.from_dict(r) for r in row.verdicts], baseline=row.baseline, seconds=row.seconds)
