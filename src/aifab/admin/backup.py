"""Backups of a data directory (``aifab backup``, ``POST /v1/admin/backup``); ``restore.py`` reads them back.

A backup is one file, ``.tar.gz`` (or ``.tgz``) or ``.tar``, or a directory (any other name), that holds ``manifest.json`` (aifab version, schema revision, time, counts, the sha256 of every other file), then
``aifab.db``, ``vectors/`` and the data directory's other files: model packages (``models/``), datasets,
uploads, fine-tuning files.

Consistency: the vector store's writers wait while the state database and the store are copied (SQLite's
online backup API for both, the store's graphs as they are), so the collections, their documents and their
chunks agree; queries and other requests go on. The files are copied after that instant: model packages,
datasets and uploads are written before the rows that name them, so every file the copied database names is
there (a file added later may be in the copy too, unnamed and harmless).

Not covered: state in PostgreSQL (``database_url``) or pgvector: use ``pg_dump`` for those; training runs
(``runs/``: data shards and checkpoints that ``aifab train`` rebuilds; the model a run produced is in
``models/``); files of models registered by reference outside the data directory (the manifest names them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aifab import __version__
from aifab.config import Settings
from aifab.errors import ConfigError, Conflict, InvalidRequest, NotFound
from aifab.state.files import copy_sqlite
from aifab.stores.embedded import EmbeddedStore
from aifab.stores.protocol import VectorStore

MANIFEST = "manifest.json"
FORMAT = 1
DATABASE = "aifab.db"
VECTORS = "vectors"
# top-level entries of a data directory that are not copied as files: the two stores (copied consistently
# instead), what belongs to the running process, and training runs (see the module's docstring)
NOT_COPIED = {DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", f"{DATABASE}-journal", VECTORS, "server.json",
              "server.token", "runs"}
ARCHIVES = (".tar.gz", ".tgz", ".tar")
TEMPORARY = (".partial", ".tmp")  # files a crash or a write in progress leaves: never part of the state


def is_archive(path: Path) -> bool:
    return path.name.endswith(ARCHIVES)


def sqlite_path(settings: Settings) -> Path:
    """The state database's file; ``ConfigError`` naming what to use where the state is not in SQLite files."""
    url = settings.effective_database_url
    if not url.startswith("sqlite:///") or settings.stores.backend != "embedded":
        raise ConfigError("aifab backup copies the embedded state (SQLite and the embedded vector store); this "
                          "configuration keeps its state in PostgreSQL: back that up with pg_dump (and the data "
                          "directory's files with tar)")
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_file():
        raise NotFound(f"no state database at {path}: nothing to back up")
    return path


def make_backup(settings: Settings, store: VectorStore, target: Path) -> dict[str, Any]:
    """Write a backup of ``settings.data_dir`` (whose vector store is ``store``) to ``target``, which must not
    exist. Built beside ``target`` and renamed into place: a failure leaves nothing behind. Returns the
    manifest without its file list, plus ``path`` and ``bytes``."""
    database = sqlite_path(settings)
    if not isinstance(store, EmbeddedStore):
        raise ConfigError(f"aifab backup copies the embedded vector store, not a {type(store).__name__} "
                          "(back up pgvector with pg_dump)")
    data_dir = settings.data_dir.resolve()
    target = _check_target(target, data_dir)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        store.snapshot(stage / VECTORS, paused=lambda: copy_sqlite(database, stage / DATABASE))
        _copy_files(data_dir, stage)
        manifest = _manifest(stage, data_dir)
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if is_archive(target):
            _pack(stage, target)
        else:
            _fsync_tree(stage)
            os.rename(stage, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    size = target.stat().st_size if target.is_file() else sum(f["bytes"] for f in manifest["files"].values())
    return {**summary(manifest), "path": str(target), "bytes": size}


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k != "files"}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def counts(database: Path, vectors: Path) -> dict[str, int]:
    """What a backup holds, counted in its own copies of the two databases."""
    out: dict[str, int] = {}
    with _readonly(database) as db:
        for name, table in (("collections", "collections"), ("keys", "api_keys"), ("models", "models"),
                            ("datasets", "datasets"), ("audit_rows", "audit_log")):
            out[name] = int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    with _readonly(vectors / "store.db") as db:
        out["chunks"] = int(db.execute("SELECT coalesce(sum(rows), 0) FROM namespaces").fetchone()[0])
    return out


def revision(database: Path) -> str | None:
    with _readonly(database) as db:
        row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


# --- internals ---------------------------------------------------------------------------------------------

def _check_target(target: Path, data_dir: Path) -> Path:
    if not target.is_absolute():
        raise InvalidRequest(f"the backup path must be absolute: {target}", param="path")
    target = Path(os.path.normpath(target))
    if target.exists():
        raise Conflict(f"{target} exists already: a backup goes to a new path")
    if target == data_dir or data_dir in target.parents:
        raise InvalidRequest(f"{target} is inside the data directory {data_dir}: back it up elsewhere", param="path")
    if not target.parent.is_dir():
        raise InvalidRequest(f"the folder {target.parent} does not exist", param="path")
    return target


def _copy_files(data_dir: Path, stage: Path) -> None:
    """Every file of the data directory but ``NOT_COPIED`` and temporary files. A file removed meanwhile (a
    deleted upload, a removed model) is skipped: the copied database no longer names it either way."""
    for entry in sorted(data_dir.iterdir()):
        if entry.name in NOT_COPIED or _is_temporary(entry.name):
            continue
        if entry.is_dir():
            shutil.copytree(entry, stage / entry.name, ignore=_temporary, copy_function=_copy_if_there)
        elif entry.is_file():
            _copy_if_there(entry, stage / entry.name)


def _temporary(_folder: str, names: list[str]) -> list[str]:
    return [n for n in names if _is_temporary(n)]


def _is_temporary(name: str) -> bool:
    """A file or folder a write in progress (or a crash in one) leaves: ``write_atomic``'s ``.partial``, a
    graph's ``.ann.tmp``, a dataset version's ``.tmp-*`` folder."""
    return name.endswith(TEMPORARY) or name.startswith(".tmp-")


def _copy_if_there(src: str | Path, dst: str | Path) -> None:
    try:
        shutil.copy2(src, dst)
    except FileNotFoundError:
        if Path(src).exists():  # the destination's folder is missing: a real error
            raise


def _manifest(stage: Path, data_dir: Path) -> dict[str, Any]:
    files = {p.relative_to(stage).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in sorted(stage.rglob("*")) if p.is_file()}
    with _readonly(stage / DATABASE) as db:
        rows = db.execute("SELECT name, path, manifest FROM models").fetchall()
    outside = sorted(name for name, path, pkg in rows  # the default models come back with their package
                     if data_dir not in Path(path).parents and "python_package" not in _lineage(pkg))
    return {"format": FORMAT, "aifab_version": __version__, "schema_revision": revision(stage / DATABASE),
            "created": datetime.now(UTC).isoformat(timespec="seconds"), "data_dir": str(data_dir),
            "counts": counts(stage / DATABASE, stage / VECTORS), "models_outside": outside, "files": files}


def _lineage(manifest: str | None) -> dict[str, Any]:
    try:
        lineage = json.loads(manifest or "{}").get("lineage")
    except (ValueError, AttributeError):
        return {}
    return lineage if isinstance(lineage, dict) else {}


def _pack(stage: Path, target: Path) -> None:
    """``manifest.json`` first, so that a reader finds it without reading the whole archive. gzip at level 1
    where asked: vectors and reranker data hardly compress (``benchmarks/backup.py``, 10k chunks: 237 MB to
    208 MB, 5.7 s to 60 s under query load), so ``.tar`` is the one to prefer."""
    partial = target.with_name(target.name + ".partial")
    compressed = not target.name.endswith(".tar")
    try:
        with open(partial, "wb") as raw:
            opened = (tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) if compressed
                      else tarfile.open(fileobj=raw, mode="w"))
            with opened as tar:
                tar.add(stage / MANIFEST, arcname=MANIFEST)
                for p in sorted(stage.rglob("*")):
                    if p.name != MANIFEST or p.parent != stage:
                        tar.add(p, arcname=p.relative_to(stage).as_posix(), recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        os.rename(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _readonly(path: Path) -> closing[sqlite3.Connection]:
    """A read-only connection to a backup's own copy of a database, closed on exit."""
    return closing(sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True))
