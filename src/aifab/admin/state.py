"""Reads and changes of the factory's state that the admin API and the CLI share: collections, the model
registry and its lineage, rollouts, datasets and usage over time. Each returns plain JSON-ready data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from aifab.config import Settings
from aifab.corpus.service import Corpus
from aifab.errors import Conflict, InvalidRequest
from aifab.finetune.datasets import DatasetStore, Lineage
from aifab.gateway.rollouts import Rollout, RolloutStore
from aifab.registry import Registry
from aifab.state import Database
from aifab.state.tables import AuditRow

TRAFFIC_WINDOW = timedelta(minutes=10)  # the "live" traffic split of a rollout


def collection_detail(corpus: Corpus, name: str) -> dict[str, Any]:
    """One collection: versions, the live version's documents, the last ingest jobs."""
    info = corpus.collections.get(name)
    documents = corpus.collections.documents(name) if info.live_version else []
    return {**info.to_dict(), "documents_list": [
        {"id": d.document_id, "source": d.source, "format": d.format, "title": d.title, "chunks": d.chunks,
         "acl": d.acl, "content_hash": d.content_hash, "updated_at": d.updated_at} for d in documents], "jobs": corpus.jobs.list(name, limit=5)}


def datasets_of(db: Database, data_dir: Path) -> DatasetStore:
    return DatasetStore(db, data_dir / "datasets")


def lineage_of(registry: Registry, data_dir: Path, *, model: str | None = None,
               response: str | None = None) -> dict[str, Any]:
    """Where a model came from (base, dataset version, the interactions behind it), or which model
    answered a logged response and its lineage."""
    if (model is None) == (response is None):
        raise InvalidRequest("give a model NAME or --response RESPONSE_ID, not both or neither")
    chain = Lineage(registry=registry, datasets=datasets_of(registry.db, data_dir))
    return chain.of_response(response) if response is not None else chain.of_model(model or "")


def promote(registry: Registry, name: str, *, canary: float | None, full: bool, serves: str | None,
            force: bool) -> Rollout:
    """Send ``canary`` percent (or, ``full``, all) of the traffic of the name ``name`` serves to it. A model
    whose evaluation gate failed is refused unless ``force``."""
    if (canary is None) == (not full):
        raise InvalidRequest("say how much traffic: --canary PERCENT or --full")
    pkg = registry.get(name)
    gate = pkg.lineage.get("gate") or {}
    if gate.get("passed") is False and not force:
        raise InvalidRequest(f"'{name}' did not pass its evaluation gate ({gate.get('reason', 'no reason recorded')}); "
                             "--force to promote it anyway")
    public = serves or pkg.lineage.get("serves") or pkg.lineage.get("base")
    if not public:
        raise InvalidRequest(f"which model name does '{name}' serve? give --as NAME")
    store = RolloutStore(registry.db)
    return store.canary(public, name, canary) if canary is not None else store.full(public, name)


def rollouts_with_traffic(db: Database, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every rollout, with the requests each version answered in the last ten minutes (the live split)."""
    since = (now or datetime.now(UTC)) - TRAFFIC_WINDOW
    rollouts = RolloutStore(db).all()
    with db.session() as s:
        rows = s.execute(select(AuditRow.model, AuditRow.route, func.count())
                         .where(AuditRow.ts >= since, AuditRow.model.in_(list(rollouts)))
                         .group_by(AuditRow.model, AuditRow.route)).all()
    traffic: dict[str, dict[str, int]] = {}
    for model, route, count in rows:
        traffic.setdefault(model, {})[route or model] = count
    return [{**r.to_dict(), "traffic": traffic.get(name, {})} for name, r in rollouts.items()]


def usage_series(db: Database, *, since: datetime, bucket_s: int, now: datetime | None = None) -> dict[str, Any]:
    """Requests and tokens per key and time bucket since ``since`` (at most 500 buckets)."""
    span = ((now or datetime.now(UTC)) - since).total_seconds()
    if bucket_s < 60 or span / bucket_s > 500:
        raise InvalidRequest(f"a bucket of {bucket_s} s over {span / 86400:.1f} days is too fine: at most 500 "
                             "buckets of at least 60 s", param="bucket")
    with db.session() as s:
        rows = s.execute(select(AuditRow.key_name, AuditRow.ts, AuditRow.prompt_tokens, AuditRow.completion_tokens)
                         .where(AuditRow.ts >= since)).all()
    start = since.timestamp()
    buckets: dict[tuple[str | None, int], list[int]] = {}
    for key, ts, prompt, completion in rows:
        ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)  # SQLite hands back naive UTC
        slot = int((ts.timestamp() - start) // bucket_s)
        totals = buckets.setdefault((key, slot), [0, 0])
        totals[0] += 1
        totals[1] += (prompt or 0) + (completion or 0)
    data = [{"key": key, "t": datetime.fromtimestamp(start + slot * bucket_s, UTC).isoformat(), "requests": r,
             "tokens": t} for (key, slot), (r, t) in sorted(buckets.items(), key=lambda kv: (kv[0][1], kv[0][0] or ""))]
    return {"object": "list", "bucket_s": bucket_s, "since": since.isoformat(), "data": data}


RELOADABLE = ("apps", "rag")  # and gateway.routes: what a running server takes from its config file again


def reload_plan(old: Settings, new: Settings) -> tuple[list[str], list[str]]:
    """What reloading the config file changes in a running server (``+ app NAME``, ``~ route NAME``, ...), and
    the sections that changed but are read only at start (a restart applies them)."""
    lines: list[str] = []
    for kind, before, after in (("app", old.apps, new.apps), ("route", old.gateway.routes, new.gateway.routes)):
        for name in sorted(set(before) | set(after)):
            if name not in before:
                lines.append(f"+ {kind} {name}")
            elif name not in after:
                lines.append(f"- {kind} {name}")
            elif before[name].model_dump() != after[name].model_dump():  # type: ignore[attr-defined]
                lines.append(f"~ {kind} {name}")
    if old.rag != new.rag:
        lines.append("~ rag (retrieval defaults)")
    restart = [name for name in type(new).model_fields
               if name not in (*RELOADABLE, "gateway", "collections", "keys")
               and getattr(old, name) != getattr(new, name)]
    if old.gateway.model_copy(update={"routes": {}}) != new.gateway.model_copy(update={"routes": {}}):
        restart.append("gateway")
    missing = sorted({t for app in new.apps.values() for t in app.tools} - set(old.tools))
    if missing:
        raise Conflict(f"the apps use tools this server has not opened ({', '.join(missing)}): restart it")
    return lines, restart
