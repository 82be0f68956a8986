"""Files under the data directory written so that a crash or a full disk never leaves half of one."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it over ``path``. On any
    failure (ENOSPC often shows only at fsync) the temporary file is removed and the error goes on up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:40]}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def copy_sqlite(source: Path, dest: Path) -> None:
    """A consistent copy of the SQLite database ``source`` at ``dest`` (a new file), taken with SQLite's online
    backup API in one step: one read transaction, so the copy is the database as of one commit, while other
    connections go on reading and (in WAL mode) writing. The copy is a single file (rollback journal mode)."""
    if not source.is_file():
        raise FileNotFoundError(f"no database at {source}")
    src = sqlite3.connect(source, timeout=60.0)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()
