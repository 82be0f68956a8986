"""The evaluation gate: a candidate is promotable only if it beats the model it would replace, on the
same held-out examples, by at least ``margin``. The verdict (passed or not, and why) is kept in the
candidate's lineage, where ``aifab models promote`` reads it."""

from __future__ import annotations

from typing import Any

# metric -> True when higher is better; the first one both evaluations have decides
METRICS = (("accuracy", True), ("exact_match", True), ("preference_accuracy", True), ("loss", False))


def gate(candidate: dict[str, Any], current: dict[str, Any], *, margin: float = 0.0,
         current_name: str = "the current model") -> dict[str, Any]:
    """Compare on the first metric both have and that tells them apart (task accuracy before loss)."""
    shared = [(m, higher) for m, higher in METRICS
              if isinstance(candidate.get(m), int | float) and isinstance(current.get(m), int | float)]
    if not shared:
        return {"passed": False, "reason": "no metric both evaluations share", "margin": margin,
                "against": current_name}
    metric, higher = next(((m, h) for m, h in shared if candidate[m] != current[m]), shared[0])
    a, b = candidate[metric], current[metric]
    gain = (a - b) if higher else (b - a)
    passed = gain > 0 and gain >= margin  # it must win, by at least the margin
    verb = "beats" if passed else "does not beat"
    reason = (f"{metric} {a:.4f} vs {b:.4f} for {current_name}: the candidate {verb} it by the margin {margin:g} "
              f"(gain {gain:+.4f})")
    return {"passed": passed, "metric": metric, "candidate": a, "current": b, "gain": gain, "margin": margin,
            "against": current_name, "reason": reason}
