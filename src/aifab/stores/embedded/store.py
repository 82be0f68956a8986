"""``EmbeddedStore``: the default ``VectorStore``, one directory under the data dir, no server.

- ``store.db`` (SQLite, WAL, ``synchronous=FULL``) is the source of truth: records, an FTS5 index for
  BM25, ACL and metadata tables for filters, and a change sequence per namespace (see ``sql.py``).
  A write is one transaction: once ``upsert``/``delete`` returns, it survives ``kill -9`` and power loss.
- ``ns{id}.ann`` per namespace is a derived cache: the faiss HNSW graph, saved atomically with the
  watermark (last change it reflects). On open it is loaded and caught up from SQLite, or rebuilt
  from SQLite when missing, corrupt, or built with other parameters.

Concurrency: one writer at a time (a lock); any number of queries. A write extends the graph in
chunks that hidden positions make invisible, then commits SQLite and publishes the new positions in
one short exclusive section, so a query sees the whole write or none of it and is never blocked for
long. Saving the index only holds the writer lock: queries go on meanwhile.

Limits: one process per directory (``Conflict`` otherwise). faiss HNSW cannot remove vectors, so
removals are tombstones until more than ``REBUILD_FRACTION`` of the graph is dead, then the graph is
rebuilt from SQLite (inside the write that crossed the line: writers wait, queries do not). Metadata
values used in ``where`` must be JSON scalars (strings, booleans, finite numbers, 64-bit integers).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aifab.errors import AifabError, Conflict, InvalidRequest, NotFound, out_of_space
from aifab.state.files import copy_sqlite
from aifab.stores.embedded import snapshot, sql
from aifab.stores.embedded.ann import AnnIndex
from aifab.stores.embedded.locks import DirectoryLock, ReadWriteLock
from aifab.stores.embedded.search import vector_search
from aifab.stores.protocol import NAMESPACE_PATTERN, ChunkRecord, Filter, Hit

log = logging.getLogger("aifab.stores.embedded")

REBUILD_FRACTION = 0.25  # rebuild the graph when more than this share of its positions is dead
SAVE_MIN_CHANGES = 20_000  # save the graph after this many changes …
SAVE_FRACTION = 0.2  # … and at least this share of its size (saving costs O(size), replay O(changes))
READ_BATCH = 20_000


@dataclass
class _Space:
    name: str
    id: int
    dims: int
    ann: AnnIndex
    unsaved: int = 0
    info: dict[str, Any] = field(default_factory=dict)


class EmbeddedStore:
    """SQLite + faiss HNSW ``VectorStore`` in ``path`` (created when missing)."""

    def __init__(self, path: Path, *, hnsw_m: int = 32, hnsw_ef_construction: int = 128,
                 hnsw_ef_search: int = 128) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.hnsw_m, self.hnsw_ef_construction, self.hnsw_ef_search = hnsw_m, hnsw_ef_construction, hnsw_ef_search
        self.exact_max_rows: int | None = None  # None: search.exact_threshold; tests set 0 to walk the graph
        self.add_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self._dir_lock = DirectoryLock(self.path)
        self._db = self.path / "store.db"
        self._write_lock = threading.Lock()
        self._rw = ReadWriteLock()
        self._local = threading.local()
        self._readers: list[Any] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._writer: Any = None
        try:
            self._writer = sql.connect(self._db, writer=True)
            self._store_id = self._identity()
            self._spaces: dict[str, _Space] = {}
            rows = self._writer.execute("SELECT name, id, dims FROM namespaces ORDER BY id").fetchall()
            for name, ns_id, dims in rows:
                self._spaces[name] = self._open_space(name, ns_id, dims)
            self._remove_stray_files()
        except BaseException:
            if self._writer is not None:
                self._writer.close()
            self._dir_lock.release()
            raise

    # -- namespaces -------------------------------------------------------------------------------

    def create_namespace(self, namespace: str, dimensions: int) -> None:
        if not isinstance(namespace, str) or not re.fullmatch(NAMESPACE_PATTERN, namespace):
            raise InvalidRequest(f"invalid namespace name {namespace!r}", param="namespace")
        if not isinstance(dimensions, int) or dimensions <= 0:
            raise InvalidRequest("dimensions must be a positive integer", param="dimensions")
        with self._write_lock:
            self._check_open()
            have = self._spaces.get(namespace)
            if have is not None:
                if have.dims != dimensions:
                    raise Conflict(f"namespace '{namespace}' has {have.dims} dimensions, not {dimensions}")
                return
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute("INSERT INTO namespaces (name, dims) VALUES (?, ?)", (namespace, dimensions))
                ns_id = int(cur.lastrowid or 0)
                for statement in sql.NAMESPACE_SCHEMA.format(t=sql.table(ns_id)).split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            space = _Space(namespace, ns_id, dimensions, self._new_ann(dimensions), info={"source": "new"})
            with self._rw.write():
                self._spaces[namespace] = space

    def drop_namespace(self, namespace: str) -> None:
        with self._write_lock:
            self._check_open()
            space = self._spaces.get(namespace)
            if space is None:
                return
            conn, t = self._writer, sql.table(space.id)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for suffix in sql.NAMESPACE_TABLES:
                    conn.execute(f"DROP TABLE IF EXISTS {t}_{suffix}")
                conn.execute("DELETE FROM namespaces WHERE id = ?", (space.id,))
                with self._rw.write():
                    conn.execute("COMMIT")
                    del self._spaces[namespace]
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            for p in (self._ann_path(space), self._ann_path(space).with_suffix(".ann.tmp")):
                p.unlink(missing_ok=True)

    def namespaces(self) -> dict[str, int]:
        return {name: s.dims for name, s in dict(self._spaces).items()}

    # -- writes -----------------------------------------------------------------------------------

    def upsert(self, namespace: str, records: Sequence[ChunkRecord]) -> None:
        space = self._space(namespace)
        prepared = sql.prepare(records, space.dims)
        if not prepared.ids:
            return
        with self._write_lock:
            space = self._space(namespace)
            t, conn = sql.table(space.id), self._writer
            conn.execute("BEGIN IMMEDIATE")
            ann = space.ann
            try:
                (seq,) = conn.execute("SELECT seq FROM namespaces WHERE id = ?", (space.id,)).fetchone()
                old = self._rows_by_id(conn, t, prepared.ids)
                first = sql.delete_rows(conn, t, old, seq + 1)
                keys = list(range(first, first + len(prepared.ids)))
                rows = [(key, *row[1:]) for key, row in zip(keys, prepared.rows, strict=True)]
                sql.insert_rows(conn, t, rows, prepared.metadata, prepared.acls)
                conn.execute("UPDATE namespaces SET seq = ?, rows = rows + ? WHERE id = ?",
                             (keys[-1], len(keys) - len(old), space.id))
                _, stop = ann.add(keys, prepared.vectors, prepared.acls, threads=self.add_threads,
                                  exclusive=self._rw.write)
                with self._rw.write():
                    conn.execute("COMMIT")
                    ann.publish(stop, [o[0] for o in old], keys[-1])
            except BaseException:
                self._abort(conn, ann)
                raise
            space.unsaved += len(keys) + len(old)
            self._maintain(space)

    def delete(self, namespace: str, ids: Iterable[str]) -> int:
        wanted = list(dict.fromkeys(ids))
        with self._write_lock:
            space = self._space(namespace)
            t, conn = sql.table(space.id), self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                old = self._rows_by_id(conn, t, wanted)
                if not old:
                    conn.execute("ROLLBACK")
                    return 0
                (seq,) = conn.execute("SELECT seq FROM namespaces WHERE id = ?", (space.id,)).fetchone()
                last = sql.delete_rows(conn, t, old, seq + 1) - 1
                conn.execute("UPDATE namespaces SET seq = ?, rows = rows - ? WHERE id = ?", (last, len(old), space.id))
                with self._rw.write():
                    conn.execute("COMMIT")
                    space.ann.publish(space.ann.size, [o[0] for o in old], last)
            except BaseException:
                self._abort(conn, space.ann)
                raise
            space.unsaved += len(old)
            self._maintain(space)
            return len(old)

    # -- reads ------------------------------------------------------------------------------------

    def fetch(
        self, namespace: str, ids: Sequence[str], *, vectors: bool = False, rerank: bool = False
    ) -> list[ChunkRecord]:
        space = self._space(namespace)
        t, conn = sql.table(space.id), self._reader()
        cols = sql.RECORD_COLUMNS + ", " + ("r.vector" if vectors else "NULL") + ", " + ("r.rerank" if rerank else "NULL")
        out: list[ChunkRecord] = []
        for part in sql.chunked(list(dict.fromkeys(ids))):
            for row in conn.execute(f"SELECT {cols} FROM {t}_rec r WHERE r.id IN ({sql.placeholders(len(part))})", part):
                record = sql.row_to_record(row, sql.decode_vectors([row[5]], space.dims)[0] if vectors else None)
                record.rerank = row[6]
                out.append(record)
        return out

    def document_chunks(self, namespace: str, document_id: str) -> set[str]:
        t = sql.table(self._space(namespace).id)
        return {r[0] for r in self._reader().execute(f"SELECT id FROM {t}_rec WHERE document_id = ?", (document_id,))}

    def count(self, namespace: str) -> int:
        space = self._space(namespace)
        (rows,) = self._reader().execute("SELECT rows FROM namespaces WHERE id = ?", (space.id,)).fetchone()
        return int(rows)

    def query(self, namespace: str, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        space = self._space(namespace)
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        if q.shape != (space.dims,) or not np.all(np.isfinite(q)):
            raise InvalidRequest(f"the query vector needs {space.dims} finite dimensions", param="vector")
        q = q / (np.linalg.norm(q) or 1.0)
        if k <= 0:
            return []
        with self._rw.read():
            space = self._space(namespace)
            conn = self._reader()
            scores, keys = vector_search(space.ann, conn, sql.table(space.id), q, k, filter,
                                         ef=self.hnsw_ef_search, exact_max_rows=self.exact_max_rows)
            records = self._records_by_key(conn, sql.table(space.id), keys)
        return [Hit(records[key].id, float(s), records[key]) for s, key in zip(scores, keys, strict=True) if key in records]

    def lexical(self, namespace: str, text: str, k: int, filter: Filter | None = None) -> list[Hit]:
        space = self._space(namespace)
        match = sql.fts_query(text)
        if match is None or k <= 0:
            return []
        t = sql.table(space.id)
        if filter is None or (filter.acl is None and not filter.where):
            # Rank in the full-text index alone, then read the k winners: joining every match to its
            # record before the sort costs twice the time when common words match most of the rows.
            rows = self._reader().execute(
                f"SELECT {sql.RECORD_COLUMNS}, -f.s FROM (SELECT rowid AS key, bm25({t}_fts) AS s FROM {t}_fts "
                f"WHERE {t}_fts MATCH ? ORDER BY s LIMIT ?) f JOIN {t}_rec r ON r.key = f.key ORDER BY f.s",
                [match, int(k)]).fetchall()
        else:
            cond, params = sql.filter_sql(t, filter)
            rows = self._reader().execute(
                f"SELECT {sql.RECORD_COLUMNS}, -bm25({t}_fts) FROM {t}_fts JOIN {t}_rec r ON r.key = {t}_fts.rowid "
                f"WHERE {t}_fts MATCH ? AND {cond} ORDER BY bm25({t}_fts) LIMIT ?", [match, *params, int(k)]).fetchall()
        return [Hit(row[0], float(row[5]), sql.row_to_record(row)) for row in rows]

    # -- lifecycle --------------------------------------------------------------------------------

    def index_info(self, namespace: str) -> dict[str, Any]:
        """How the namespace's graph was obtained at open (loaded, caught up, rebuilt and why) and its
        current state; for operators, tests and the benchmark."""
        space = self._space(namespace)
        a = space.ann
        return {**space.info, "size": a.size, "visible": a.visible_count, "dead": a.dead,
                "watermark": a.watermark, "unsaved": space.unsaved}

    def save(self) -> None:
        """Save every namespace's graph that has changed since it was last saved."""
        with self._write_lock:
            self._check_open()
            for space in list(self._spaces.values()):
                if space.unsaved or not self._ann_path(space).exists():
                    self._save(space)

    def snapshot(self, dest: Path, *, paused: Callable[[], None] | None = None) -> dict[str, int]:
        """Write a consistent copy of the store into ``dest`` (a new directory), for backups: SQLite through
        its online backup API and every namespace's graph as it is now, so the copy opens as is, without a
        rebuild or a replay. Writers wait meanwhile; queries go on (the graphs are only read). ``paused``
        runs first, inside the same pause: a caller copies its own state (the collections that point at
        these namespaces) at the same instant. Returns the records per namespace."""
        with self._write_lock:
            self._check_open()
            if paused is not None:
                paused()
            dest.mkdir(parents=True)
            copy_sqlite(self._db, dest / self._db.name)
            for space in list(self._spaces.values()):  # published in full: the writer lock is ours
                snapshot.save(space.ann, dest / self._ann_path(space).name, self._ann_identity(space))
            rows = self._writer.execute("SELECT name, rows FROM namespaces").fetchall()
            return {str(name): int(n) for name, n in rows}

    def close(self) -> None:
        """Save the graphs and release the directory. Idempotent."""
        with self._write_lock:
            if self._closed:
                return
            try:
                for space in list(self._spaces.values()):
                    if space.unsaved or not self._ann_path(space).exists():
                        self._save(space)
            finally:
                self._closed = True
                with self._readers_lock:
                    for conn in self._readers:
                        conn.close()
                    self._readers.clear()
                self._writer.close()
                self._dir_lock.release()

    def __enter__(self) -> EmbeddedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise AifabError("the embedded store is closed")

    def _space(self, namespace: str) -> _Space:
        self._check_open()
        space = self._spaces.get(namespace)
        if space is None:
            raise NotFound(f"no namespace '{namespace}'")
        return space

    def _reader(self) -> Any:
        """This thread's read connection (SQLite connections must not be shared across threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sql.connect(self._db, writer=False)
            with self._readers_lock:
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    def _identity(self) -> str:
        conn = self._writer
        row = conn.execute("SELECT value FROM store_meta WHERE name = 'store_id'").fetchone()
        if row is not None:
            return str(row[0])
        store_id = uuid.uuid4().hex
        conn.execute("INSERT INTO store_meta (name, value) VALUES ('store_id', ?), ('schema', ?)",
                     (store_id, str(sql.SCHEMA_VERSION)))
        return store_id

    def _remove_stray_files(self) -> None:
        """Index files of dropped namespaces, and temporary files of saves a crash interrupted."""
        keep = {self._ann_path(s).name for s in self._spaces.values()}
        for f in self.path.glob("ns*.ann*"):
            if f.name not in keep:
                f.unlink(missing_ok=True)

    def _new_ann(self, dims: int) -> AnnIndex:
        return AnnIndex(dims, m=self.hnsw_m, ef_construction=self.hnsw_ef_construction)

    def _ann_path(self, space: _Space) -> Path:
        return self.path / f"{sql.table(space.id)}.ann"

    def _ann_identity(self, space: _Space) -> dict[str, Any]:
        return {"store": self._store_id, "namespace": space.id, "dims": space.dims}

    @staticmethod
    def _rows_by_id(conn: Any, t: str, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for part in sql.chunked(list(ids)):
            out += conn.execute(f"SELECT key, text, metadata, acl FROM {t}_rec WHERE id IN ({sql.placeholders(len(part))})",
                                part).fetchall()
        return sorted(out)

    @staticmethod
    def _records_by_key(conn: Any, t: str, keys: np.ndarray) -> dict[int, ChunkRecord]:
        out: dict[int, ChunkRecord] = {}
        for part in sql.chunked(keys.tolist()):
            for row in conn.execute(f"SELECT r.key, {sql.RECORD_COLUMNS} FROM {t}_rec r "
                                    f"WHERE r.key IN ({sql.placeholders(len(part))})", part):
                out[row[0]] = sql.row_to_record(row[1:])
        return out

    def _abort(self, conn: Any, ann: AnnIndex) -> None:
        """Undo a failed write: roll SQLite back; positions already added to the graph stay hidden."""
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if ann.size > ann.published:
            with self._rw.write():
                ann.discard()

    # -- the graph: open, catch up, rebuild, save -------------------------------------------------

    def _open_space(self, name: str, ns_id: int, dims: int) -> _Space:
        space = _Space(name, ns_id, dims, self._new_ann(dims))
        sql.add_rerank_column(self._writer, sql.table(ns_id))
        t0 = time.perf_counter()
        ann, why = snapshot.load(self._ann_path(space), self._ann_identity(space),
                                 m=self.hnsw_m, ef_construction=self.hnsw_ef_construction)
        if ann is not None:
            seq, pruned = self._writer.execute("SELECT seq, pruned FROM namespaces WHERE id = ?", (ns_id,)).fetchone()
            if not pruned <= ann.watermark <= seq:  # removals it would need were pruned, or a newer graph
                why = f"watermark {ann.watermark} outside the change log ({pruned}..{seq})"
                ann = None
        if ann is None:
            if why != "no index file":
                log.warning("namespace %s: index file not used (%s); rebuilding from SQLite", name, why)
            space.ann = self._catch_up(space, self._new_ann(dims))
            space.info = {"source": "rebuilt", "reason": why, "rebuilt": space.ann.size}
            space.unsaved = space.ann.size
        else:
            before, dead_before = ann.size, ann.dead
            space.ann = self._catch_up(space, ann)
            space.info = {"source": "loaded", "replayed_adds": space.ann.size - before,
                          "replayed_removals": space.ann.dead - dead_before}
            space.unsaved = space.info["replayed_adds"] + space.info["replayed_removals"]
        space.info["open_seconds"] = time.perf_counter() - t0
        self._maintain(space)
        return space

    def _catch_up(self, space: _Space, ann: AnnIndex) -> AnnIndex:
        """Apply every change after ``ann.watermark`` from SQLite (from 0: a full build). Runs under
        the writer lock (or before the store is shared); searches may use the *old* graph meanwhile."""
        t = sql.table(space.id)
        conn = self._writer
        conn.execute("BEGIN")  # one snapshot: the rows, the removals and seq agree
        try:
            (seq,) = conn.execute("SELECT seq FROM namespaces WHERE id = ?", (space.id,)).fetchone()
            removed = [r[0] for r in conn.execute(f"SELECT key FROM {t}_del WHERE seq > ?", (ann.watermark,))]
            cur = conn.execute(f"SELECT key, acl, vector FROM {t}_rec WHERE key > ? ORDER BY key", (ann.watermark,))
            while batch := cur.fetchmany(READ_BATCH):
                ann.add([r[0] for r in batch], sql.decode_vectors([r[2] for r in batch], space.dims),
                        [tuple(json.loads(r[1])) for r in batch], threads=self.add_threads)
        finally:
            conn.execute("COMMIT")
        ann.publish(ann.size, removed, seq)
        return ann

    def _maintain(self, space: _Space) -> None:
        """After a write: rebuild a graph that is mostly tombstones; save one that has changed a lot."""
        ann = space.ann
        if ann.dead > REBUILD_FRACTION * max(ann.published, 1):
            t0 = time.perf_counter()
            fresh = self._catch_up(space, self._new_ann(space.dims))
            with self._rw.write():
                space.ann = fresh
            log.info("namespace %s: graph rebuilt without %d dead positions in %.1fs",
                     space.name, ann.dead, time.perf_counter() - t0)
            space.info["rebuilds"] = space.info.get("rebuilds", 0) + 1
            self._save(space)
        elif space.unsaved >= max(SAVE_MIN_CHANGES, SAVE_FRACTION * ann.size):
            self._save(space)

    def _save(self, space: _Space) -> None:
        """Write the graph (holding only the writer lock: queries go on), then forget the removals
        it already reflects. A failed save is logged, not raised: SQLite has the data."""
        ann = space.ann
        try:
            snapshot.save(ann, self._ann_path(space), self._ann_identity(space))
        except (OSError, RuntimeError) as exc:  # faiss reports a failed write of ours as a RuntimeError
            log.warning("namespace %s: could not save the index (%s); it will be rebuilt or replayed on open",
                        space.name, exc)
            return
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(f"DELETE FROM {sql.table(space.id)}_del WHERE seq <= ?", (ann.watermark,))
            conn.execute("UPDATE namespaces SET pruned = MAX(pruned, ?) WHERE id = ?", (ann.watermark, space.id))
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # pruning only saves space later: a full disk may wait
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if out_of_space(exc) is None:
                raise
            log.warning("namespace %s: the change log was not pruned (%s)", space.name, exc)
            return
        space.unsaved = 0

