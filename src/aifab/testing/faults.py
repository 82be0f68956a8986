"""A disk that fills up, for tests: the errors aifab sees on a full disk, raised where it would see them.

No filesystem is mounted (a non-root test run cannot): ``DiskFull`` makes the state database's writes
fail as SQLite does on a full disk ("database or disk is full", raised through SQLAlchemy), ``os.fsync``
fail with ENOSPC (where a full disk shows for buffered writes), and :class:`FillingStore`'s writes fail
the same way, until :meth:`DiskFull.free`.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event

from aifab.state import Database
from aifab.stores.protocol import ChunkRecord, VectorStore

WRITES = ("INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "DROP")


class DiskFull:
    """Fill with :meth:`fill`, free with :meth:`free`, and :meth:`close` (or use as a context manager) to
    put ``os.fsync`` back. ``db``: the database whose writes fail; ``files``: whether fsync fails."""

    def __init__(self, db: Database | None = None, *, files: bool = True) -> None:
        self.full = False
        self.db, self.files = db, files
        self._fsync = os.fsync
        if db is not None:
            event.listen(db.engine, "before_cursor_execute", self._statement)
        if files:
            os.fsync = self._sync

    def fill(self) -> None:
        self.full = True

    def free(self) -> None:
        self.full = False

    def check(self) -> None:
        """Raise SQLite's full-disk error while the disk is full (for stores and other writers)."""
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")

    def close(self) -> None:
        if self.db is not None:
            event.remove(self.db.engine, "before_cursor_execute", self._statement)
        if self.files:
            os.fsync = self._fsync

    def __enter__(self) -> DiskFull:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in WRITES:
            self.check()

    def _sync(self, fd: Any) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._fsync(fd)


class FillingStore:
    """A ``VectorStore`` whose first write after :meth:`arm` fills ``disk`` and fails: the disk running
    out in the middle of an ingest, after the job has started. Everything else goes to ``store``."""

    def __init__(self, store: VectorStore, disk: DiskFull) -> None:
        self.store, self.disk = store, disk
        self.armed = False

    def arm(self) -> None:
        self.armed = True

    def upsert(self, namespace: str, records: Sequence[ChunkRecord]) -> None:
        if self.armed:
            self.armed = False
            self.disk.fill()
        self.disk.check()
        self.store.upsert(namespace, records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)
