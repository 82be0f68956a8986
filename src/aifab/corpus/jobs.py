"""Ingest jobs: progress and outcome in the state database, so that the API (and a user after a crash)
can see what an ingest did. One running ingest per collection: a second one is refused.

Who owns a job is a lease: the process that queued or started it writes its host, pid, a per-process
token and an expiry, and renews the expiry every third of ``lease_s`` while the job is queued or running.
A job's owner is gone when the lease has expired, or at once when the owner ran on this host and its
pid is dead (or is this very process under a new token: a restart that got the same pid, as in a
container). So the rule holds when several hosts share one PostgreSQL: a host never judges another
host's pids. Jobs of a gone owner become ``interrupted``; :meth:`Jobs.recover` claims them (one process
wins each) for the caller to resume or clean up, and records which in ``recovery``.

An outcome that cannot be written (the disk is full) is kept in memory, shown by :meth:`get`, and
written before anything else this object writes: the collection's lock is released either way.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import SQLAlchemyError

from aifab.errors import Conflict, NotFound, out_of_space
from aifab.state import Database
from aifab.state.tables import IngestJobRow

log = logging.getLogger("aifab.corpus")
ACTIVE = ("queued", "running")
LEASE_S = 60.0

Clock = Callable[[], datetime]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)  # SQLite gives back naive UTC times


def job_dict(row: IngestJobRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "collection": row.collection,
        "version": row.version,
        "status": row.status,
        "files_total": row.files_total,
        "files_done": row.files_done,
        "summary": row.summary,
        "recovery": row.recovery,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
    }


class Jobs:
    """Ingest jobs of one state database, owned under a lease by this process (see the module doc).
    ``clock`` (UTC) is injectable so that tests move time instead of waiting for it."""

    def __init__(self, db: Database, *, min_interval: float = 0.5, lease_s: float = LEASE_S,
                 clock: Clock = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.min_interval = min_interval
        self.lease_s = lease_s
        self.clock = clock
        self.host, self.pid, self.instance = socket.gethostname()[:255], os.getpid(), uuid.uuid4().hex
        self._last: dict[str, float] = {}
        self._guard = threading.Lock()
        self._held: set[str] = set()  # queued or running here: the keeper renews their leases
        self._keeper: threading.Thread | None = None
        self._unwritten: dict[str, dict[str, Any]] = {}  # outcomes a full disk refused, by job id

    # -- a job's life ---------------------------------------------------------------------------------

    def queue(self, collection: str, *, request: dict[str, Any] | None = None) -> str:
        """A job that a worker will ``start``; visible (as 'queued') from now on. ``request`` is what
        :meth:`recover`'s caller needs to run it again if this process dies first."""
        self._write_unwritten()
        job_id = uuid.uuid4().hex
        with self.db.session() as s:
            s.add(IngestJobRow(id=job_id, collection=collection, status="queued", files_total=0, files_done=0,
                               summary={}, request=request, **self._lease()))
        self._hold(job_id)
        return job_id

    def start(self, collection: str, *, job_id: str | None = None) -> str:
        """Register a running job; ``Conflict`` while a live owner ingests into ``collection``. Running
        jobs of a gone owner are marked 'interrupted' (superseded by this one)."""
        self._write_unwritten()
        job_id = job_id or uuid.uuid4().hex
        now = self.clock()
        with self.db.session() as s:
            for row in s.scalars(
                select(IngestJobRow).where(IngestJobRow.collection == collection, IngestJobRow.status == "running")
            ):
                if row.id == job_id:
                    continue
                if not self._gone(row, now):
                    raise Conflict(f"an ingest into '{collection}' is already running (job {row.id}, "
                                   f"pid {row.pid}{' on ' + row.host if row.host else ''})")
                row.status, row.finished_at = "interrupted", now
                row.recovery = {"action": "superseded", "job": job_id}
            existing = s.get(IngestJobRow, job_id)
            if existing is None:
                s.add(IngestJobRow(id=job_id, collection=collection, status="running", files_total=0,
                                   files_done=0, summary={}, **self._lease()))
            else:
                existing.status = "running"
                for name, value in self._lease().items():
                    setattr(existing, name, value)
        self._hold(job_id)
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
        """Record the outcome and release the job. On a full disk the outcome waits in memory (and the
        error that filled it goes on up from the caller): see the module doc."""
        with self._guard:
            self._held.discard(job_id)
            self._unwritten[job_id] = {"status": status, "summary": summary, "finished_at": self.clock()}
        self._last.pop(job_id, None)
        self._write_unwritten()

    def recover(self) -> list[IngestJobRow]:
        """Claim the queued and running jobs whose owner is gone: each becomes 'interrupted' here, in a
        conditional update that only one process wins. The caller resumes or cleans up each one and
        says which with :meth:`set_recovery`."""
        self._write_unwritten()
        now = self.clock()
        with self.db.session() as s:
            rows = [r for r in s.scalars(select(IngestJobRow).where(IngestJobRow.status.in_(ACTIVE)))
                    if self._gone(r, now)]
            claimed = []
            for row in rows:
                result = cast(CursorResult[Any], s.execute(
                    update(IngestJobRow).where(IngestJobRow.id == row.id, IngestJobRow.status == row.status)
                    .values(status="interrupted", finished_at=now).execution_options(synchronize_session=False)
                ))
                if result.rowcount:
                    claimed.append(row.id)
        with self.db.session() as s:
            out = list(s.scalars(select(IngestJobRow).where(IngestJobRow.id.in_(claimed))))
            s.expunge_all()
        return out

    def set_recovery(self, job_id: str, recovery: dict[str, Any]) -> None:
        with self.db.session() as s:
            row = s.get(IngestJobRow, job_id)
            if row is not None:
                row.recovery = recovery

    def renew(self) -> None:
        """Extend the lease of every job this object holds (the keeper thread calls it)."""
        with self._guard:
            held = list(self._held)
        if held:
            with self.db.session() as s:
                s.execute(update(IngestJobRow).where(IngestJobRow.id.in_(held), IngestJobRow.instance == self.instance)
                          .values(lease_expires=self._expiry()).execution_options(synchronize_session=False))

    # -- reading --------------------------------------------------------------------------------------

    def get(self, job_id: str) -> dict[str, Any]:
        self._write_unwritten()
        with self.db.session() as s:
            row = s.get(IngestJobRow, job_id)
            if row is None:
                raise NotFound(f"no ingest job '{job_id}'")
            return self._shown(job_dict(row))

    def list(self, collection: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        self._write_unwritten()
        with self.db.session() as s:
            q = select(IngestJobRow).order_by(IngestJobRow.created_at.desc()).limit(limit)
            if collection:
                q = q.where(IngestJobRow.collection == collection)
            return [self._shown(job_dict(r)) for r in s.scalars(q)]

    # -- internals ------------------------------------------------------------------------------------

    def _shown(self, job: dict[str, Any]) -> dict[str, Any]:
        """The job with its outcome, even one that is only in memory yet."""
        with self._guard:
            pending = self._unwritten.get(job["id"])
        return {**job, **pending} if pending else job

    def _gone(self, row: IngestJobRow, now: datetime) -> bool:
        if row.instance == self.instance:
            return False  # ours: held, or its outcome is waiting in memory
        if row.host is None:  # a row from before leases: the old rule, by pid on this host
            return row.pid != self.pid and not _alive(row.pid)
        if row.host == self.host and (row.pid == self.pid or not _alive(row.pid)):
            return True
        return row.lease_expires is None or _utc(row.lease_expires) <= now

    def _expiry(self) -> datetime:
        return self.clock() + timedelta(seconds=self.lease_s)

    def _lease(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "instance": self.instance, "lease_expires": self._expiry()}

    def _hold(self, job_id: str) -> None:
        with self._guard:
            self._held.add(job_id)
            if self._keeper is None:
                self._keeper = threading.Thread(target=self._keep, name="aifab-ingest-lease", daemon=True)
                self._keeper.start()

    def _keep(self) -> None:
        while True:
            time.sleep(self.lease_s / 3)
            with self._guard:
                if not self._held:
                    self._keeper = None
                    return
            try:
                self.renew()
            except SQLAlchemyError as exc:  # e.g. a full disk: the next renewal may work
                log.warning("could not renew the lease of ingest jobs: %s", exc)

    def _write_unwritten(self) -> None:
        """Write the outcomes a full disk refused; they stay in memory while it still refuses."""
        with self._guard:
            pending = dict(self._unwritten)
        for job_id, outcome in pending.items():
            try:
                with self.db.session() as s:
                    row = s.get(IngestJobRow, job_id)
                    if row is not None:
                        row.status, row.summary = outcome["status"], outcome["summary"]
                        row.finished_at, row.files_done = outcome["finished_at"], row.files_total
                        row.lease_expires = None
            except Exception as exc:
                if out_of_space(exc) is None:
                    raise
                log.warning("ingest job %s: its outcome (%s) waits for disk space", job_id, outcome["status"])
                return
            with self._guard:
                if self._unwritten.get(job_id) is outcome:
                    del self._unwritten[job_id]
