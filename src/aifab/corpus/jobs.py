"""Ingest jobs: progress and outcome in the state database, so that the API (and a user after a crash)
can see what an ingest did. One running ingest per collection: a second one is refused."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from aifab.errors import Conflict, NotFound
from aifab.state import Database
from aifab.state.tables import IngestJobRow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def job_dict(row: IngestJobRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "collection": row.collection,
        "version": row.version,
        "status": row.status,
        "files_total": row.files_total,
        "files_done": row.files_done,
        "summary": row.summary,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
    }


class Jobs:
    def __init__(self, db: Database, *, min_interval: float = 0.5) -> None:
        self.db = db
        self.min_interval = min_interval
        self._last: dict[str, float] = {}

    def queue(self, collection: str) -> str:
        """A job that a worker will ``start``; visible (as 'queued') from now on."""
        job_id = uuid.uuid4().hex
        with self.db.session() as s:
            s.add(IngestJobRow(id=job_id, collection=collection, status="queued", pid=os.getpid(),
                               files_total=0, files_done=0, summary={}))
        return job_id

    def start(self, collection: str, *, job_id: str | None = None) -> str:
        """Register a running job; ``Conflict`` while another live process ingests into ``collection``.
        Jobs left 'running' by a dead process are marked 'interrupted'."""
        with self.db.session() as s:
            for row in s.scalars(
                select(IngestJobRow).where(IngestJobRow.collection == collection, IngestJobRow.status == "running")
            ):
                if row.id == job_id:
                    continue
                if row.pid != os.getpid() and not _alive(row.pid):
                    row.status, row.finished_at = "interrupted", datetime.now(UTC)
                else:
                    raise Conflict(f"an ingest into '{collection}' is already running (job {row.id}, pid {row.pid})")
            job_id = job_id or uuid.uuid4().hex
            existing = s.get(IngestJobRow, job_id)
            if existing is None:
                s.add(IngestJobRow(id=job_id, collection=collection, status="running", pid=os.getpid(),
                                   files_total=0, files_done=0, summary={}))
            else:
                existing.status, existing.pid = "running", os.getpid()
        return job_id

    def progress(self, job_id: str, *, version: int | None, files_total: int, files_done: int,
                 summary: dict[str, Any], force: bool = False) -> None:
        """Record progress, at most every ``min_interval`` seconds unless ``force``."""
        now = time.monotonic()
        if not force and now - self._last.get(job_id, 0.0) < self.min_interval:
            return
        self._last[job_id] = now
        with self.db.session() as s:
            row = s.get(IngestJobRow, job_id)
            if row is not None:
                row.version, row.files_total, row.files_done, row.summary = version, files_total, files_done, summary

    def finish(self, job_id: str, status: str, summary: dict[str, Any]) -> None:
        with self.db.session() as s:
            row = s.get(IngestJobRow, job_id)
            if row is not None:
                row.status, row.summary, row.finished_at = status, summary, datetime.now(UTC)
                row.files_done = row.files_total
        self._last.pop(job_id, None)

    def get(self, job_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            row = s.get(IngestJobRow, job_id)
            if row is None:
                raise NotFound(f"no ingest job '{job_id}'")
            return job_dict(row)

    def list(self, collection: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(IngestJobRow).order_by(IngestJobRow.created_at.desc()).limit(limit)
            if collection:
                q = q.where(IngestJobRow.collection == collection)
            return [job_dict(r) for r in s.scalars(q)]
