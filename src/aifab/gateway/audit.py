"""The audit log: one row per model request, written in batches by a background thread so the request
path never waits on the database. A crash loses at most the last ``interval`` seconds of rows."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON, Table, insert

from aifab.state import Database
from aifab.state.tables import AuditRow

log = logging.getLogger("aifab.gateway")
AUDIT: Table = AuditRow.__table__  # type: ignore[assignment]  # a core insert: no ORM work per row
COLUMNS = [c.name for c in AUDIT.columns]
JSON_COLUMNS = frozenset(c.name for c in AUDIT.columns if isinstance(c.type, JSON))
INSERT_SQLITE = f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
CHUNK = 200


def _sqlite_value(value: Any, column: str) -> Any:
    if column in JSON_COLUMNS:
        return None if value is None else orjson.dumps(value).decode()
    if isinstance(value, datetime):  # naive UTC text, SQLAlchemy's SQLite format
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


class AuditLog:
    def __init__(self, db: Database, *, interval: float = 0.5, max_pending: int = 100_000) -> None:
        self.db, self.interval, self.max_pending = db, interval, max_pending
        self._pending: deque[dict[str, Any]] = deque()
        self.dropped = 0
        self._wake = threading.Event()
        self._flushing = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="aifab-audit", daemon=True)
        self._thread.start()

    def record(self, row: dict[str, Any]) -> None:
        if len(self._pending) >= self.max_pending:
            self.dropped += 1  # the database is far behind: count, never block a request on it
            return
        self._pending.append(row)

    def flush(self) -> None:
        """Write what is pending, in chunks, yielding between them so the event loop's thread keeps the
        interpreter (a long insert must not stall requests). When it returns, every row recorded before
        the call is in the database, even if the writer thread had already taken it."""
        with self._flushing:
            while self._pending:
                rows = [self._pending.popleft() for _ in range(min(CHUNK, len(self._pending)))]
                try:
                    self._write(rows)
                except Exception:
                    log.exception("could not write %d audit rows", len(rows))
                time.sleep(0)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        if self.db.engine.dialect.name != "sqlite":
            with self.db.engine.begin() as conn:
                conn.execute(insert(AUDIT), rows)
            return
        # SQLite: one executemany of plain tuples (the driver loops in C), values as SQLAlchemy stores them
        params = [tuple(_sqlite_value(row.get(c), c) for c in COLUMNS) for row in rows]
        raw = self.db.engine.raw_connection()
        try:
            raw.cursor().executemany(INSERT_SQLITE, params)
            raw.commit()
        finally:
            raw.close()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval)
            self.flush()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()
