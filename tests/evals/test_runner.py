"""Thresholds, regressions against a baseline, harness errors: the verdicts of a run (fake harnesses)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from aifab.errors import InvalidRequest, NotFound
from aifab.evals import Baseline, EvalRun, load_suite, run_suite
from aifab.testing import FakeHarnesses

SUITE = """
name = "gate"
[[retrieval]]
collection = "kb"
qa = "evals/questions.jsonl"
thresholds = { "recall@5" = 0.6 }
regression = { "mrr@10" = 0.05 }
[[task]]
model = "m"
dataset = "d@v1"
thresholds = { loss = 2.5, exact_match = 0.5 }
regression = { loss = 0.1 }
"""
R, T = "retrieval:kb", "task:m@d@v1"
GOOD = {R: {"recall@5": 3 / 5, "mrr@10": 0.5, "questions": 5.0}, T: {"loss": 2.5, "exact_match": 0.5}}


def clock(start=datetime(2026, 1, 1, tzinfo=UTC)):
    ticks = iter(range(1000))
    return lambda: start + timedelta(seconds=next(ticks))


def run(write_suite, results, baseline=None, text=SUITE):
    suite, sha = load_suite(write_suite(text))
    return run_suite(suite, sha, FakeHarnesses(results), baseline=baseline, clock=clock())


def verdicts(result):
    return {(r.check, r.metric): r.verdict for r in result.verdicts}


def test_values_on_their_limits_pass_and_unlimited_metrics_are_shown(write_suite):
    result = run(write_suite, GOOD)
    assert result.passed and not result.failures
    assert verdicts(result) == {(R, "recall@5"): "pass", (R, "mrr@10"): "-",  # no baseline: nothing to regress
                                (T, "loss"): "pass", (T, "exact_match"): "pass"}
    assert result.metrics == GOOD and result.baseline is None


@pytest.mark.parametrize("check, metric, value, message", [
    (R, "recall@5", 0.4, "recall@5 0.4000 is below the minimum 0.6"),
    (T, "loss", 2.6, "loss 2.6000 is above the maximum 2.5"),  # lower is better: the threshold is a maximum
    (T, "exact_match", math.nan, "exact_match was not measured"),
])
def test_a_metric_past_its_threshold_fails(write_suite, check, metric, value, message):
    result = run(write_suite, {**GOOD, check: {**GOOD[check], metric: value}})
    assert not result.passed
    [failure] = result.failures
    assert (failure.check, failure.metric, failure.verdict, failure.message) == (check, metric, "fail", message)


def test_a_limited_metric_the_harness_did_not_report_fails(write_suite):
    result = run(write_suite, {**GOOD, T: {"loss": 2.0}})
    assert [(r.metric, r.message) for r in result.failures] == [("exact_match", "exact_match was not measured")]


def test_regressions_count_worsening_beyond_the_allowed_drop(write_suite):
    base = Baseline("before", {R: {"mrr@10": 0.56}, T: {"loss": 2.35}})
    worse_run = run(write_suite, GOOD, base)  # mrr@10 0.56 -> 0.5: down 0.06, 0.05 allowed
    assert verdicts(worse_run)[(R, "mrr@10")] == "fail"
    assert "mrr@10 0.5000 dropped by 0.0600 from the baseline 0.5600 (allowed 0.05)" in worse_run.failures[0].message
    assert verdicts(worse_run)[(T, "loss")] == "fail"  # loss rose by 0.15 > 0.1
    assert worse_run.failures[1].message.startswith("loss 2.5000 rose by 0.1500")
    row = next(r for r in worse_run.verdicts if r.metric == "mrr@10")
    assert row.baseline == 0.56 and row.delta == pytest.approx(-0.06) and worse_run.baseline == "before"
    ok = run(write_suite, GOOD, Baseline("before", {R: {"mrr@10": 0.55}, T: {"loss": 2.4}}))  # worse by exactly the limit
    assert ok.passed, ok.failures


def test_a_baseline_without_the_check_leaves_its_regression_unjudged(write_suite):
    result = run(write_suite, GOOD, Baseline("other", {"retrieval:elsewhere": {"mrr@10": 1.0}}))
    assert result.passed and verdicts(result)[(R, "mrr@10")] == "-"
    assert next(r for r in result.verdicts if r.metric == "mrr@10").message == "no baseline to compare with"


def test_a_harness_error_fails_its_check_and_the_others_still_run(write_suite):
    suite, sha = load_suite(write_suite(SUITE))
    harnesses = FakeHarnesses({R: NotFound("collection 'kb' does not exist"), T: GOOD[T]})
    result = run_suite(suite, sha, harnesses, clock=clock())
    assert harnesses.calls == [R, T] and not result.passed
    assert [(r.check, r.metric, r.verdict, r.message) for r in result.failures] == [
        (R, "recall@5", "error", "collection 'kb' does not exist"), (R, "mrr@10", "error", "collection 'kb' does not exist")]
    assert R not in result.metrics and result.metrics[T] == GOOD[T]


def test_a_run_records_its_inputs_and_round_trips_through_json(write_suite, tmp_path):
    result = run(write_suite, GOOD)
    assert result.hashes["files"].keys() == {"evals/questions.jsonl"}
    assert result.hashes["inputs"] == {R: {"fake": R}, T: {"fake": T}}
    assert result.started_at == datetime(2026, 1, 1, tzinfo=UTC) and result.finished_at > result.started_at
    assert EvalRun.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_a_baseline_file_is_what_json_wrote(write_suite, tmp_path):
    first = run(write_suite, GOOD)
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(first.to_dict()))
    worse = {**GOOD, R: {**GOOD[R], "mrr@10": 0.4}}
    result = run(write_suite, worse, Baseline.from_file(path))
    assert result.baseline == str(path) and verdicts(result)[(R, "mrr@10")] == "fail"


@pytest.mark.parametrize("content, message", [
    ("{nope", "is not JSON"),
    ('{"metrics": [1]}', "has no per-check 'metrics'"),
    ("[]", "has no per-check 'metrics'"),
])
def test_a_bad_baseline_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(InvalidRequest, match=message):
        Baseline.from_file(path)
