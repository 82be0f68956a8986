"""Verdicts: a check's metrics against its thresholds and against a baseline run's metrics."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from aifab.evals.suite import LOWER_IS_BETTER, METRICS, Check

TOLERANCE = 1e-9  # float rounding: 3/5 computed one way may be 0.6000000000000001 another


@dataclass
class Row:
    """One metric of one check: its value, limits, baseline and verdict (pass, fail, error, or "-" when
    nothing judges the metric: no limit names it, or only a regression limit and there is no baseline)."""

    check: str
    metric: str
    value: float | None
    threshold: float | None = None
    lower_is_better: bool = False
    baseline: float | None = None
    delta: float | None = None
    allowed: float | None = None
    verdict: str = "-"
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict in ("fail", "error")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def judge(check: Check, metrics: dict[str, float] | None, baseline: dict[str, float] | None = None,
          error: str | None = None) -> list[Row]:
    """One row per metric the check's kind reports (or per limited metric when the check failed to run)."""
    if error is not None:
        return [Row(check.id, m, None, check.thresholds.get(m), m in LOWER_IS_BETTER, verdict="error", message=error)
                for m in check.limited() or ["run"]]
    metrics = metrics or {}
    names = [m for m in METRICS[check.kind] if m in metrics or m in check.limited()]
    return [_row(check, m, _number(metrics.get(m)), _number((baseline or {}).get(m))) for m in names]


def _number(value: Any) -> float | None:
    """A metric's value, or None where it was not measured (absent, NaN: e.g. a loss over no examples)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def _row(check: Check, metric: str, value: float | None, base: float | None) -> Row:
    lower = metric in LOWER_IS_BETTER
    threshold, allowed = check.thresholds.get(metric), check.regression.get(metric)
    row = Row(check.id, metric, value, threshold, lower, base, None if value is None or base is None else value - base,
              allowed)
    if threshold is None and (allowed is None or base is None):
        row.message = "" if allowed is None else "no baseline to compare with"
        return row  # nothing to judge it by
    problems = []
    if value is None:
        problems.append(f"{metric} was not measured")
    else:
        if threshold is not None and (value > threshold + TOLERANCE if lower else value < threshold - TOLERANCE):
            problems.append(f"{metric} {value:.4f} is {'above the maximum' if lower else 'below the minimum'} "
                            f"{threshold:g}")
        if allowed is not None and base is not None:
            worse = (value - base) if lower else (base - value)
            if worse > allowed + TOLERANCE:
                problems.append(f"{metric} {value:.4f} {'rose' if lower else 'dropped'} by {worse:.4f} from the "
                                f"baseline {base:.4f} (allowed {allowed:g})")
    row.verdict, row.message = ("fail", "; ".join(problems)) if problems else ("pass", "")
    return row
