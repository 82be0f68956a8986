"""The audit log: one row per model request, written in batches by a background thread so the request
path never waits on the database. A crash loses at most the last ``interval`` seconds of rows."""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from sqlalchemy import insert

from aifab.state import Database
from aifab.state.tables import AuditRow

log = logging.getLogger("aifab.gateway")


class AuditLog:
    def __init__(self, db: Database, *, interval: float = 0.5, max_pending: int = 100_000) -> None:
        self.db, self.interval, self.max_pending = db, interval, max_pending
        self._pending: deque[dict[str, Any]] = deque()
        self.dropped = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="aifab-audit", daemon=True)
        self._thread.start()

    def record(self, row: dict[str, Any]) -> None:
        if len(self._pending) >= self.max_pending:
            self.dropped += 1  # the database is far behind: count, never block a request on it
            return
        self._pending.append(row)

    def flush(self) -> None:
        rows = []
        while self._pending:
            rows.append(self._pending.popleft())
        if not rows:
            return
        try:
            with self.db.engine.begin() as conn:
                conn.execute(insert(AuditRow), rows)
        except Exception:
            log.exception("could not write %d audit rows", len(rows))

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval)
            self.flush()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()
