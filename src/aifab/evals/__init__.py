"""Evals as CI gates: suites of checks (retrieval, answers, task evals) run with the existing harnesses,
judged against thresholds and a baseline run, kept in the state store, reported as a table or JUnit XML."""

from aifab.evals.judge import Row
from aifab.evals.protocol import Harnesses, Measured
from aifab.evals.runner import Baseline, EvalRun, run_suite
from aifab.evals.store import EvalRuns
from aifab.evals.suite import Suite, load_suite

__all__ = ["Baseline", "EvalRun", "EvalRuns", "Harnesses", "Measured", "Row", "Suite", "load_suite", "run_suite"]
