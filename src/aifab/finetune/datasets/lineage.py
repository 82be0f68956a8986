"""Lineage: from a fine-tuned model to its dataset version to the logged interactions it came from, and
from a logged response to the model that answered it (and that model's lineage).

Each link is followed as far as this data directory allows; a link that cannot be followed is stated in
``missing`` ("dataset X@v3 is not in this data directory") rather than raised, so that what is known is
still shown. The model that answered a response is looked up in the registry by the audit row's route,
then by the name the client asked for; a remote upstream's own model is not in the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select

from aifab.errors import NotFound
from aifab.feedback import FeedbackStore, utc
from aifab.finetune.datasets.store import DatasetStore, DatasetVersion
from aifab.registry import Registry
from aifab.state.tables import AuditRow, DatasetRow, FeedbackRow

CHUNK = 500  # ids per IN (...) query


class Lineage:
    def __init__(self, *, registry: Registry, datasets: DatasetStore) -> None:
        self.registry = registry
        self.datasets = datasets
        self.db = datasets.db

    def of_model(self, name: str) -> dict[str, Any]:
        """A registered model's lineage, its dataset version and that version's source interactions."""
        pkg = self.registry.get(name)
        out: dict[str, Any] = {"object": "lineage", "model": name, "lineage": pkg.lineage,
                               "base": pkg.lineage.get("base"), "dataset": None, "interactions": [], "missing": []}
        ref = pkg.lineage.get("dataset")
        if isinstance(ref, str) and ref:  # "NAME@vN", as a hand-written manifest may put it
            ref = {"name": ref}
        if not isinstance(ref, dict) or not ref.get("name"):
            out["missing"].append(f"model {name} names no dataset in its lineage (it was not fine-tuned here)")
            return out
        wanted = _ref(ref)
        try:
            version = self.datasets.get(wanted)
        except NotFound:
            out["missing"].append(f"dataset {wanted} is not in this data directory")
            return out
        sha = ref.get("sha256")
        if sha and sha != version.sha256:
            out["missing"].append(f"dataset {version.ref} here has sha256 {version.sha256[:12]}, but {name} was "
                                  f"trained on sha256 {str(sha)[:12]}: not the same data")
        out["dataset"] = _summary(version)
        out["interactions"], missing = self._source(version)
        out["missing"] += missing
        return out

    def of_response(self, response_id: str) -> dict[str, Any]:
        """Which model answered a logged response, the feedback on it, the datasets that used it, and the
        answering model's lineage when it is in the registry."""
        with self.db.session() as s:
            row = s.get(AuditRow, response_id)
            if row is None:
                raise NotFound(f"no logged response with id {response_id!r}", param="response_id")
            response = {"id": row.id, "ts": utc(row.ts).isoformat(), "endpoint": row.endpoint, "model": row.model,
                        "route": row.route, "upstream": row.upstream, "key": row.key_name, "status": row.status,
                        "allow_training": bool(row.allow_training), "context": row.context}
            used = [f"{d.name}@v{d.version}" for d in s.scalars(select(DatasetRow)
                                                                .order_by(DatasetRow.name, DatasetRow.version))
                    if response_id in (d.source or {}).get("interactions", ())]
        out: dict[str, Any] = {
            "object": "lineage", "response": response,
            "feedback": [f.to_dict() for f in FeedbackStore(self.db).for_response(response_id)],
            "datasets": used, "model": None, "missing": [],
        }
        for name in dict.fromkeys(n for n in (row.route, row.model) if n):
            try:
                out["model"] = self.of_model(name)
                break
            except NotFound:
                continue
        else:
            where = f" (upstream {row.upstream})" if row.upstream else ""
            out["missing"].append(f"model {row.route or row.model} that answered it is not in the registry{where}")
        return out

    def _source(self, version: DatasetVersion) -> tuple[list[dict[str, Any]], list[str]]:
        source = version.source or {}
        if source.get("from") == "file":
            path = Path(source.get("path") or "")
            gone = [] if path.is_file() else [f"source file {path} of {version.ref} is no longer there"]
            return [], gone
        ids = list(source.get("interactions") or [])
        found = self.interactions(ids)
        lost = len(ids) - len(found)
        missing = [f"{lost} of the {len(ids)} source interactions of {version.ref} are no longer in the audit log"]
        return found, missing if lost else []

    def interactions(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Audit ids as ``{id, ts, model, route, key, rating, corrected}``, oldest first; unknown ids left out."""
        rows: list[dict[str, Any]] = []
        with self.db.session() as s:
            for start in range(0, len(ids), CHUNK):
                chunk = list(ids[start:start + CHUNK])
                latest: dict[str, FeedbackRow] = {}
                for fb in s.scalars(select(FeedbackRow).where(FeedbackRow.response_id.in_(chunk))
                                    .order_by(FeedbackRow.created_at, FeedbackRow.id)):
                    latest[fb.response_id] = fb  # the latest wins, as in the build
                for a in s.execute(select(AuditRow.id, AuditRow.ts, AuditRow.model, AuditRow.route,
                                          AuditRow.key_name).where(AuditRow.id.in_(chunk))):
                    last = latest.get(a.id)
                    rows.append({"id": a.id, "ts": utc(a.ts).isoformat(), "model": a.model, "route": a.route,
                                 "key": a.key_name, "rating": last.rating if last else None,
                                 "corrected": bool(last and last.correction)})
        return sorted(rows, key=lambda r: (r["ts"], r["id"]))


def _ref(ref: dict[str, Any]) -> str:
    version = str(ref.get("version") or "").removeprefix("v")
    return f"{ref['name']}@v{version}" if version and "@" not in str(ref["name"]) else str(ref["name"])


def _summary(version: DatasetVersion) -> dict[str, Any]:
    source = {k: v for k, v in (version.source or {}).items() if k not in ("interactions", "feedback")}
    for field in ("interactions", "feedback"):
        if field in (version.source or {}):
            source[field] = len(version.source[field])
    return {"ref": version.ref, "kind": version.kind, "sha256": version.sha256, "path": str(version.path),
            "counts": version.counts, "source": source}
