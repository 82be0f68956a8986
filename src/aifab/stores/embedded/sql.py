"""The SQLite side of the embedded store: schema, connections, filters as SQL, and the row codecs.

SQLite is the source of truth. Each namespace gets an integer id and five tables named from it
(``ns{id}_rec`` …), so that user-chosen namespace names never reach SQL text. Every change takes the
next value of the namespace's change sequence ``seq``: a record version's primary key *is* the
sequence value at which it was written (a replaced record gets a new key), and a removed key is
logged in ``ns{id}_del`` under its own sequence value. The ANN index remembers the last ``seq`` it
reflects (its watermark) and catches up by reading rows with ``key > watermark`` and removals with
``seq > watermark``.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aifab.errors import InvalidRequest
from aifab.stores.lexical import query_terms
from aifab.stores.protocol import ChunkRecord, Filter

SCHEMA_VERSION = 1
# SQLite's default limit on bound parameters is 32766 here, but older builds allow 999: stay below.
MAX_PARAMS = 900

STORE_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS namespaces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    dims INTEGER NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0,      -- last change sequence value used
    rows INTEGER NOT NULL DEFAULT 0,     -- live records
    pruned INTEGER NOT NULL DEFAULT 0    -- removals with seq <= pruned are no longer logged
);
"""

NAMESPACE_SCHEMA = """
CREATE TABLE {t}_rec (
    key INTEGER PRIMARY KEY,             -- the change sequence value that wrote this version
    id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,              -- JSON object
    acl TEXT NOT NULL,                   -- JSON list of tags, '[]' = public
    vector BLOB NOT NULL,                -- float32, little-endian, unit length
    rerank BLOB                          -- a reranker's data (aifab.stores.tokens), or NULL
);
CREATE INDEX {t}_rec_doc ON {t}_rec (document_id);
CREATE TABLE {t}_acl (tag TEXT NOT NULL, key INTEGER NOT NULL, PRIMARY KEY (tag, key)) WITHOUT ROWID;
-- scalar metadata values for `where` filters. `value` has no type: SQLite keeps 1 and '1' apart
CREATE TABLE {t}_meta (name TEXT NOT NULL, value NOT NULL, key INTEGER NOT NULL,
                       PRIMARY KEY (name, value, key)) WITHOUT ROWID;
CREATE TABLE {t}_del (seq INTEGER PRIMARY KEY, key INTEGER NOT NULL);
CREATE VIRTUAL TABLE {t}_fts USING fts5 (
    text, content='{t}_rec', content_rowid='key', tokenize='porter unicode61 remove_diacritics 2'
);
"""

NAMESPACE_TABLES = ("rec", "acl", "meta", "del", "fts")
MAX_LEXICAL_TERMS = 64


def table(ns_id: int) -> str:
    return f"ns{int(ns_id)}"


def add_rerank_column(conn: sqlite3.Connection, t: str) -> None:
    """Namespaces made before records carried reranker data get the (NULL) column; a no-op after."""
    if "rerank" not in {row[1] for row in conn.execute(f"PRAGMA table_info({t}_rec)")}:
        conn.execute(f"ALTER TABLE {t}_rec ADD COLUMN rerank BLOB")


def connect(path: Path, *, writer: bool) -> sqlite3.Connection:
    """A connection in WAL mode. ``synchronous=FULL`` makes a commit durable across power loss,
    not only across a killed process. ``isolation_level=None``: transactions are explicit."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA journal_size_limit=67108864")  # give the WAL file back after a big write
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
    if writer:
        conn.executescript(STORE_SCHEMA)
    return conn


def placeholders(n: int) -> str:
    return ",".join("?" * n)


def chunked(items: Sequence[Any], size: int = MAX_PARAMS) -> Iterator[Sequence[Any]]:
    for at in range(0, len(items), size):
        yield items[at : at + size]


# -- row codecs --------------------------------------------------------------------------------------


def encode_vector(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def decode_vectors(blobs: Sequence[bytes], dims: int) -> np.ndarray:
    if not blobs:
        return np.empty((0, dims), np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dims).astype(np.float32)


def indexable(value: Any) -> bool:
    """Metadata values a `where` filter can match: scalars that SQLite stores exactly."""
    if isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return isinstance(value, float) and math.isfinite(value)


def row_to_record(row: Sequence[Any], vector: np.ndarray | None = None) -> ChunkRecord:
    """``row`` = (id, document_id, text, metadata, acl)."""
    return ChunkRecord(id=row[0], document_id=row[1], text=row[2], vector=vector,
                       metadata=json.loads(row[3]), acl=tuple(json.loads(row[4])))


RECORD_COLUMNS = "r.id, r.document_id, r.text, r.metadata, r.acl"


# -- filters as SQL ----------------------------------------------------------------------------------


def where_sql(t: str, where: Filter | None) -> tuple[str, list[Any]]:
    """SQL (over ``{t}_rec AS r``) for the ``where`` part of a filter, and its parameters.

    Metadata conditions are written as ``r.key IN (SELECT key FROM meta …)`` so that SQLite can drive
    the query from the (name, value, key) index instead of scanning the records."""
    clauses: list[str] = []
    params: list[Any] = []
    for name, want in (where.where.items() if where is not None else ()):
        options = list(want) if isinstance(want, list | tuple | set | frozenset) else [want]
        options = [o for o in options if indexable(o)]
        if not options:
            return "0", []
        if len(options) > MAX_PARAMS:
            raise InvalidRequest(f"too many values for '{name}' (at most {MAX_PARAMS})")
        if name == "document_id":
            clauses.append(f"r.document_id IN ({placeholders(len(options))})")
            params += options
        else:
            clauses.append(f"r.key IN (SELECT key FROM {t}_meta WHERE name = ? AND value IN ({placeholders(len(options))}))")
            params += [name, *options]
    return (" AND ".join(clauses) or "1"), params


def acl_sql(t: str, acl: frozenset[str] | None) -> tuple[str, list[Any]]:
    """SQL (over ``{t}_rec AS r``) for the ACL part: public, or sharing a tag with the caller."""
    if acl is None:
        return "1", []
    tags = sorted(acl)
    if len(tags) > MAX_PARAMS:
        raise InvalidRequest(f"too many ACL tags (at most {MAX_PARAMS})")
    if not tags:
        return "r.acl = '[]'", []
    return (f"(r.acl = '[]' OR EXISTS (SELECT 1 FROM {t}_acl a WHERE a.tag IN ({placeholders(len(tags))}) "
            "AND a.key = r.key))"), tags


def filter_sql(t: str, f: Filter | None) -> tuple[str, list[Any]]:
    w, wp = where_sql(t, f)
    a, ap = acl_sql(t, f.acl if f is not None else None)
    return f"{w} AND {a}", wp + ap


def fts_query(text: str) -> str | None:
    """An FTS5 query built from the words of ``text`` only (``aifab.stores.lexical``): an OR of quoted
    terms, so that nothing the user typed is read as query syntax (quotes, AND/OR/NOT, column filters,
    prefixes)."""
    terms = query_terms(text, MAX_LEXICAL_TERMS)
    if not terms:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in terms)


# -- writes ------------------------------------------------------------------------------------------


def delete_rows(conn: sqlite3.Connection, t: str, rows: Iterable[Sequence[Any]], first_seq: int) -> int:
    """Remove record versions ``rows`` = (key, text, metadata, acl) and log each removal under its
    own sequence value from ``first_seq`` on. Returns the next unused sequence value."""
    seq = first_seq
    for key, text, metadata, acl in rows:
        conn.execute(f"DELETE FROM {t}_rec WHERE key = ?", (key,))
        conn.execute(f"INSERT INTO {t}_fts ({t}_fts, rowid, text) VALUES ('delete', ?, ?)", (key, text))
        conn.executemany(f"DELETE FROM {t}_acl WHERE tag = ? AND key = ?", [(tag, key) for tag in json.loads(acl)])
        conn.executemany(f"DELETE FROM {t}_meta WHERE name = ? AND value = ? AND key = ?",
                         [(n, v, key) for n, v in json.loads(metadata).items() if indexable(v)])
        conn.execute(f"INSERT INTO {t}_del (seq, key) VALUES (?, ?)", (seq, key))
        seq += 1
    return seq


def insert_rows(conn: sqlite3.Connection, t: str,
                rows: Sequence[tuple[int, str, str, str, str, str, bytes, bytes | None]],
                metadata: Sequence[dict[str, Any]], acls: Sequence[tuple[str, ...]]) -> None:
    """Insert record versions ``rows`` = (key, id, document_id, text, metadata JSON, acl JSON, vector,
    rerank data)."""
    conn.executemany(f"INSERT INTO {t}_rec (key, id, document_id, text, metadata, acl, vector, rerank) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.executemany(f"INSERT INTO {t}_fts (rowid, text) VALUES (?, ?)", [(r[0], r[3]) for r in rows])
    conn.executemany(f"INSERT INTO {t}_acl (tag, key) VALUES (?, ?)",
                     [(tag, r[0]) for r, acl in zip(rows, acls, strict=True) for tag in acl])
    conn.executemany(f"INSERT INTO {t}_meta (name, value, key) VALUES (?, ?, ?)",
                     [(n, v, r[0]) for r, md in zip(rows, metadata, strict=True)
                      for n, v in md.items() if indexable(v)])


@dataclass
class Prepared:
    """Records validated and encoded for one write."""

    ids: list[str]
    rows: list[tuple[int, str, str, str, str, str, bytes, bytes | None]]
    vectors: np.ndarray
    metadata: list[dict[str, Any]]
    acls: list[tuple[str, ...]]


def prepare(records: Sequence[ChunkRecord], dims: int) -> Prepared:
    """Validate and encode before any write: a bad record fails the whole call, and nothing is written."""
    latest: dict[str, ChunkRecord] = {}
    for r in records:
        if r.vector is None:
            raise InvalidRequest(f"chunk '{r.id}' has no vector", param="vector")
        latest.pop(r.id, None)
        latest[r.id] = r  # the last of duplicate ids wins, as if written one after the other
    vectors = np.empty((len(latest), dims), np.float32)
    out = Prepared([], [], vectors, [], [])
    for i, r in enumerate(latest.values()):
        v = np.asarray(r.vector, dtype=np.float32)
        if v.shape != (dims,) or not np.all(np.isfinite(v)):
            raise InvalidRequest(f"chunk '{r.id}' needs a vector of {dims} finite dimensions", param="vector")
        vectors[i] = v / (np.linalg.norm(v) or 1.0)
        acl = tuple(dict.fromkeys(str(tag) for tag in r.acl))
        try:
            metadata = json.dumps(r.metadata, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"chunk '{r.id}': metadata is not JSON ({exc})", param="metadata") from exc
        out.ids.append(r.id)
        out.metadata.append(json.loads(metadata))
        out.acls.append(acl)
        out.rows.append((0, r.id, r.document_id, r.text, metadata, json.dumps(acl, ensure_ascii=False),
                         encode_vector(vectors[i]), r.rerank))
    return out
