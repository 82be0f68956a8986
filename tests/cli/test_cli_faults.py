"""``aifab ingest`` on a full disk, as a user runs it (a real subprocess): one line and exit code 1, the
job recorded as failed, no temporary file left in ``vectors/``, nothing else touched."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import aifab

pytestmark = pytest.mark.slow  # loads the real embedding model

SRC = str(Path(aifab.__file__).parents[1])  # the child runs the code under test, too
# Loaded by the child interpreter before aifab runs: the disk that holds vectors/ is full. The vector
# store's SQLite says so on its first write, and fsync (where a buffered write finds out) fails.
FULL_DISK = '''
import errno, os, sqlite3
from aifab.stores.embedded.store import EmbeddedStore

def _full(*args, **kwargs):
    raise sqlite3.OperationalError("database or disk is full")

def _fsync(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

EmbeddedStore.upsert = _full
os.fsync = _fsync
'''


def test_ingest_on_a_full_disk_is_one_line_and_a_failed_job(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(FULL_DISK)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text("# Guide\n\n## Install\n\nRun the installer and follow the prompts.\n")
    data = tmp_path / "data"
    r = subprocess.run([sys.executable, "-m", "aifab.cli.main", "ingest", str(docs), "-C", "kb", "--data-dir",
                        str(data)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{SRC}"})
    assert r.returncode == 1, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("aifab: error:")]
    assert len(errors) == 1 and "out of disk space" in errors[0], r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    with sqlite3.connect(data / "aifab.db") as db:
        ((status, summary),) = db.execute("SELECT status, summary FROM ingest_jobs").fetchall()
        assert db.execute("SELECT count(*) FROM documents").fetchone() == (0,)
    assert status == "failed" and "out of disk space" in summary
    assert not list((data / "vectors").glob("*.tmp"))
    assert (docs / "guide.md").exists() and [p.name for p in docs.iterdir()] == ["guide.md"]
