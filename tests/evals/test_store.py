"""Runs kept in the state store: listed newest first, by suite, fetched by id; SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from aifab.errors import NotFound
from aifab.evals import EvalRun, EvalRuns, Row
from aifab.state import Database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'aifab.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    db = Database(url)
    db.upgrade()
    yield db
    db.close()


def a_run(run_id: str, suite: str, minute: int, passed: bool = True) -> EvalRun:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    rows = [Row("retrieval:kb", "recall@5", 0.4, 0.6, verdict="pass" if passed else "fail", message="" if passed else "low")]
    return EvalRun(run_id, suite, start, start + timedelta(seconds=3), passed, {"name": suite},
                   {"suite": "ab" * 32, "files": {"q.jsonl": "cd" * 32}, "inputs": {}},
                   {"retrieval:kb": {"recall@5": 0.4}}, rows, baseline=None, seconds={"retrieval:kb": 2.5})


def test_the_migration_makes_the_table(database):
    assert "eval_runs" in inspect(database.engine).get_table_names()


def test_runs_are_stored_listed_and_fetched(database):
    runs = EvalRuns(database)
    for run in (a_run("eval-1", "a", 1), a_run("eval-2", "b", 2, passed=False), a_run("eval-3", "a", 3)):
        runs.add(run)
    assert [r.id for r in runs.list()] == ["eval-3", "eval-2", "eval-1"]
    assert [r.id for r in runs.list("a")] == ["eval-3", "eval-1"]
    assert [r.id for r in runs.list(limit=1)] == ["eval-3"]
    assert runs.last("b").id == "eval-2" and runs.last("c") is None
    assert runs.get("eval-2") == a_run("eval-2", "b", 2, passed=False)  # every field, times with their zone
    with pytest.raises(NotFound, match="no eval run 'eval-9'"):
        runs.get("eval-9")
