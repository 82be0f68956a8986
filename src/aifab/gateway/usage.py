"""What each key used: requests, errors, tokens and latency from the audit log, budget from ``key_usage``.

Served at ``GET /v1/usage`` and printed by ``aifab usage``. Latency percentiles are computed here from the
audit rows in the window, so a report over a long window of a busy gateway reads every row's latency.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Case, Row, case, func, select

from aifab.errors import InvalidRequest
from aifab.gateway.keys import KeyStore
from aifab.identity import ApiKey
from aifab.state import Database
from aifab.state.tables import AuditRow, KeyUsageRow

_AGO = re.compile(r"(\d+)([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``24h``, ``7d``, ``30m`` (ago), or an ISO date or time (UTC unless it names a zone)."""
    ago = _AGO.fullmatch(value.strip())
    if ago:
        try:
            return (now or datetime.now(UTC)) - timedelta(**{_UNITS[ago[2]]: int(ago[1])})
        except OverflowError:
            raise InvalidRequest(f"bad time {value!r}: that is before the year 1", param="since") from None
    try:
        ts = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRequest(f"bad time {value!r}: use 24h, 7d, 30m or a date like 2026-11-01",
                             param="since") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def usage_report(db: Database, *, key: ApiKey | None = None, since: datetime | None = None) -> dict[str, Any]:
    """Usage of one key, or of every key (revoked ones with activity in the window, and requests made
    without a key as ``"key": null``) when ``key`` is None. Budget figures are lifetime, not windowed."""
    since = since.astimezone(UTC) if since is not None else None
    where = [AuditRow.ts >= since] if since is not None else []
    if key is not None:
        where.append(AuditRow.key_id == key.id)
    with db.session() as s:
        per_model = s.execute(
            select(AuditRow.key_id, AuditRow.model, func.count(), func.sum(AuditRow.prompt_tokens),
                   func.sum(AuditRow.completion_tokens), func.sum(_between(400, 500)), func.sum(_between(500, 600)))
            .where(*where).group_by(AuditRow.key_id, AuditRow.model)
        ).all()
        timings = s.execute(select(AuditRow.key_id, AuditRow.latency_ms, AuditRow.ttft_ms).where(*where)).all()
        spent = {r.key_id: r.prompt_tokens + r.completion_tokens for r in s.scalars(select(KeyUsageRow))}
    keys = [key] if key is not None else KeyStore(db).list(include_revoked=True)
    entries: dict[str | None, dict[str, Any]] = {k.id: _entry(k.id, k, spent.get(k.id, 0)) for k in keys}
    for key_id, model, requests, prompt, completion, err4, err5 in per_model:
        entry = entries.get(key_id) or entries.setdefault(key_id, _entry(key_id, None, 0))
        entry["requests"] += requests
        entry["prompt_tokens"] += prompt or 0
        entry["completion_tokens"] += completion or 0
        entry["errors"]["4xx"] += err4 or 0
        entry["errors"]["5xx"] += err5 or 0
        entry["models"][model] = {"requests": requests, "prompt_tokens": prompt or 0,
                                  "completion_tokens": completion or 0, "errors": (err4 or 0) + (err5 or 0)}
    _add_timings(entries, timings)
    shown = [e for e in entries.values() if e["requests"] or not e["revoked"]]
    return {"object": "usage", "since": since.isoformat() if since else None, "keys": shown}


def _between(low: int, high: int) -> Case[int]:
    return case(((AuditRow.status >= low) & (AuditRow.status < high), 1), else_=0)


def _entry(key_id: str | None, key: ApiKey | None, spent: int) -> dict[str, Any]:
    """A key's totals; ``key`` is None for requests made without a key (or with one deleted since)."""
    budget = key.budget_tokens if key else None
    return {
        "key": key.name if key else None, "id": key_id,
        "revoked": bool(key and key.revoked_at), "requests": 0, "errors": {"4xx": 0, "5xx": 0},
        "prompt_tokens": 0, "completion_tokens": 0, "latency_ms": None, "ttft_ms": None,
        "budget_tokens": budget, "budget_spent": spent if budget is not None else None,
        "budget_left": max(budget - spent, 0) if budget is not None else None, "models": {},
    }


def _add_timings(entries: dict[str | None, dict[str, Any]], rows: Iterable[Row[str | None, float, float | None]]) -> None:
    latency: dict[str | None, list[float]] = defaultdict(list)
    ttft: dict[str | None, list[float]] = defaultdict(list)
    for key_id, latency_ms, ttft_ms in rows:
        latency[key_id].append(latency_ms)
        if ttft_ms is not None:
            ttft[key_id].append(ttft_ms)
    for key_id, entry in entries.items():
        entry["latency_ms"] = _percentiles(latency.get(key_id))
        entry["ttft_ms"] = _percentiles(ttft.get(key_id))


def _percentiles(values: list[float] | None) -> dict[str, float] | None:
    """Nearest-rank p50 and p95."""
    if not values:
        return None
    values.sort()
    return {f"p{q}": round(values[max(math.ceil(q / 100 * len(values)) - 1, 0)], 1) for q in (50, 95)}
