"""A run as JUnit XML, the test report format CI systems (GitHub Actions reporters, GitLab) read: one
``<testsuite>`` per suite, one ``<testcase>`` per check and metric, ``<failure>`` for a metric that failed
its limits and ``<error>`` for a check whose harness could not run."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from aifab.evals.judge import Row
from aifab.evals.runner import EvalRun


def junit_xml(run: EvalRun) -> bytes:
    root = ET.Element("testsuites", name="aifab eval", tests=str(len(run.verdicts)))
    suite = ET.SubElement(root, "testsuite", {
        "name": run.suite, "id": run.id, "tests": str(len(run.verdicts)),
        "failures": str(sum(r.verdict == "fail" for r in run.verdicts)),
        "errors": str(sum(r.verdict == "error" for r in run.verdicts)), "skipped": "0",
        "timestamp": run.started_at.replace(microsecond=0).isoformat(),
        "time": f"{(run.finished_at - run.started_at).total_seconds():.3f}",
    })
    root.set("failures", suite.get("failures", "0"))
    root.set("errors", suite.get("errors", "0"))
    for row in run.verdicts:
        case = ET.SubElement(suite, "testcase", classname=f"{run.suite}.{row.check}", name=row.metric)
        if row.verdict == "fail":
            ET.SubElement(case, "failure", message=row.message, type="threshold").text = _details(row)
        elif row.verdict == "error":
            ET.SubElement(case, "error", message=row.message, type="harness").text = row.message
        else:
            ET.SubElement(case, "system-out").text = _details(row)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _details(row: Row) -> str:
    parts = [f"value={_num(row.value)}"]
    if row.threshold is not None:
        parts.append(f"{'maximum' if row.lower_is_better else 'minimum'}={row.threshold:g}")
    if row.baseline is not None:
        parts.append(f"baseline={_num(row.baseline)} delta={_num(row.delta, signed=True)}")
    if row.allowed is not None:
        parts.append(f"allowed_worsening={row.allowed:g}")
    return " ".join(parts)


def _num(value: float | None, signed: bool = False) -> str:
    return "-" if value is None else f"{value:+.4f}" if signed else f"{value:.4f}"
