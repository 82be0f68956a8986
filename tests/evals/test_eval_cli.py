"""`aifab eval run|runs|show` as a user runs them: the real executable, its output and exit code."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from aifab.testing.cli import run_aifab as aifab

MISSING = """
name = "ci"
[[retrieval]]
collection = "kb"
qa = "evals/questions.jsonl"
thresholds = { "recall@5" = 0.5 }
"""


def test_a_bad_suite_is_one_line_and_exit_1(write_suite, tmp_path):
    path = write_suite(MISSING.replace("collection", "colection"))
    r = aifab("eval", "run", str(path), "--data-dir", str(tmp_path / "d"))
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f"aifab: error: {path}: unknown key retrieval.0.colection: did you mean 'collection'?\n"


def test_gate_exit_codes_junit_and_stored_runs_when_a_check_cannot_run(write_suite, tmp_path):
    path, data, junit = write_suite(MISSING), str(tmp_path / "d"), tmp_path / "out.xml"
    r = aifab("eval", "run", str(path), "--data-dir", data)  # no --gate: reported, exit 0
    assert r.returncode == 0, r.stderr
    assert "ERROR" in r.stdout and "ci: FAILED (1 of 1 metrics)" in r.stdout
    line = "aifab: eval error: ci retrieval:kb recall@5: collection 'kb' does not exist"
    assert r.stderr.startswith(line)
    r = aifab("eval", "run", str(path), "--gate", "--junit", str(junit), "--json", "--data-dir", data)
    assert r.returncode == 1 and r.stderr.startswith(line) and len(r.stderr.splitlines()) == 1
    run = json.loads(r.stdout)
    assert run["suite"] == "ci" and run["passed"] is False and run["verdicts"][0]["verdict"] == "error"
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case.get("name") == "recall@5" and case.find("error") is not None

    r = aifab("eval", "runs", "--suite", "ci", "--json", "--data-dir", data)
    assert r.returncode == 0 and [x["id"] for x in json.loads(r.stdout)][0] == run["id"]
    assert len(json.loads(r.stdout)) == 2
    r = aifab("eval", "show", run["id"], "--data-dir", data)
    assert r.returncode == 0 and run["id"] in r.stdout and "retrieval:kb" in r.stdout
    assert f"evals/questions.jsonl sha256 {run['hashes']['files']['evals/questions.jsonl']}" in r.stdout
    r = aifab("eval", "show", "eval-nope", "--data-dir", data)
    assert r.returncode == 1 and r.stderr.startswith("aifab: error: no eval run 'eval-nope'")
    r = aifab("eval", "run", str(path), "--baseline", str(tmp_path / "nope.json"), "--data-dir", data)
    assert r.returncode == 1 and r.stderr.startswith("aifab: error: cannot read the baseline")


PASSING = """
name = "rivers"
[[retrieval]]
collection = "kb"
qa = "evals/questions.jsonl"
thresholds = { "recall@5" = 1.0 }
regression = { "mrr@10" = 0.0 }
"""


@pytest.mark.slow
def test_gate_passes_on_good_retrieval_and_fails_on_a_threshold(write_suite, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "rivers.md").write_text("# Rivers\n\n## Danube\n\nThe Danube flows through Vienna and Budapest into "
                                    "the Black Sea.\n\n## Rhine\n\nThe Rhine reaches the North Sea.\n")
    (docs / "cats.md").write_text("# Cats\n\nCats sleep sixteen hours a day and purr when content.\n")
    data = str(tmp_path / "d")
    r = aifab("ingest", str(docs), "-C", "kb", "--data-dir", data, timeout=600)
    assert r.returncode == 0, r.stderr
    good = write_suite(PASSING)
    r = aifab("eval", "run", str(good), "--gate", "--baseline", "last", "--data-dir", data, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "rivers: passed" in r.stdout
    assert r.stderr == ("aifab: warning: no stored run of the suite 'rivers' to compare with: this run will be "
                        "the first\n")
    # a question whose gold is in no document: recall@5 drops to 0.5, under the minimum 1.0
    (tmp_path / "evals" / "questions.jsonl").open("a").write(json.dumps(
        {"question": "Which dogs bark?", "gold": {"source": "dogs.md"}}) + "\n")
    r = aifab("eval", "run", str(good), "--gate", "--baseline", "last", "--data-dir", data, timeout=600)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "aifab: eval fail: rivers retrieval:kb recall@5: recall@5 0.6667 is below the minimum 1",
        "aifab: eval fail: rivers retrieval:kb mrr@10: mrr@10 0.6667 dropped by 0.3333 from the baseline 1.0000 "
        "(allowed 0)",
    ]
    assert "FAIL" in r.stdout and "baseline run eval-" in r.stdout
