"""The JUnit XML report: the structure CI test reporters read."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from aifab.evals import EvalRun, Row
from aifab.evals.junit import junit_xml


def test_one_testsuite_one_testcase_per_check_and_metric_with_failures_and_errors():
    start = datetime(2026, 1, 1, 12, tzinfo=UTC)
    rows = [
        Row("retrieval:kb", "recall@5", 0.8, 0.6, verdict="pass"),
        Row("retrieval:kb", "mrr@10", 0.4, None, baseline=0.5, delta=-0.1, allowed=0.05, verdict="fail",
            message="mrr@10 0.4000 dropped by 0.1000 from the baseline 0.5000 (allowed 0.05)"),
        Row("task:m@d", "loss", 3.0, 2.5, lower_is_better=True, verdict="fail", message="loss 3.0000 is above the maximum 2.5"),
        Row("answers:hr", "cites_gold", None, 0.5, verdict="error", message="no app named 'hr'"),
        Row("retrieval:kb", "ndcg@10", 0.7),
    ]
    run = EvalRun("eval-1", "helpdesk", start, start + timedelta(seconds=12.5), False, {}, {}, {}, rows)
    root = ET.fromstring(junit_xml(run))
    assert root.tag == "testsuites" and (root.get("tests"), root.get("failures"), root.get("errors")) == ("5", "2", "1")
    [suite] = root
    assert suite.tag == "testsuite" and suite.get("name") == "helpdesk" and suite.get("time") == "12.500"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("5", "2", "1", "0")
    assert suite.get("timestamp") == "2026-01-01T12:00:00+00:00"
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("helpdesk.retrieval:kb", "recall@5"), ("helpdesk.retrieval:kb", "mrr@10"), ("helpdesk.task:m@d", "loss"),
        ("helpdesk.answers:hr", "cites_gold"), ("helpdesk.retrieval:kb", "ndcg@10")]
    assert [len(c.findall("failure")) + len(c.findall("error")) for c in cases] == [0, 1, 1, 1, 0]
    failure = cases[1].find("failure")
    assert failure.get("message") == rows[1].message
    assert failure.text == "value=0.4000 baseline=0.5000 delta=-0.1000 allowed_worsening=0.05"
    assert cases[2].find("failure").text == "value=3.0000 maximum=2.5"
    assert cases[3].find("error").get("message") == "no app named 'hr'"
    assert cases[0].find("system-out").text == "value=0.8000 minimum=0.6"
