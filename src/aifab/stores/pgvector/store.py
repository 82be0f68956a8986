"""``PgVectorStore``: the ``VectorStore`` protocol on PostgreSQL + pgvector (the cloud-hosted backend).

Layout: a catalogue table ``aifab_vector_namespaces`` (name, dims, table) and one table per namespace
with an HNSW index (cosine), a GIN full-text index, GIN indexes on the ACL tags and metadata, and a
btree on ``document_id``. See ``aifab.stores.pgvector.sql`` for the full-text configuration.

Dense search runs on the HNSW index with ``hnsw.ef_search`` (raised to ``k`` when ``k`` is larger, up to
pgvector's 1000). Filtered queries use pgvector's iterative index scan (0.8+), which keeps walking the graph
until ``k`` rows pass the filter; when that still returns fewer than ``k`` (a filter matching few rows, or
an older pgvector) the query is redone as an exact scan of the matching rows, so ``k`` is always filled
when enough rows match. ``k`` above 1000 is always exact.

Writes go through the HNSW index row by row, which is slow for big loads (200k x 384 on 2 busy cores:
3.5-12 ms a row once the graph is large); ``bulk_load`` drops the index for a block of upserts and builds
it in one pass at the end (~30 s of inserts and ~6.5 min of build for 200k x 384).

Lexical search ranks with ``ts_rank_cd`` (cover density, length-normalised), not BM25: it has no term
rarity (IDF). Dropping English stop words makes up for part of that; very common terms in a large
namespace make a lexical query rank every row that contains them.

Limits: PostgreSQL text cannot hold NUL characters and a ``tsvector`` holds at most 1 MB, so such a chunk
is rejected (``InvalidRequest``, the whole batch with it). Dimensions are limited to 2000 (HNSW on
``vector``). Zero or non-finite vectors are rejected: they have no cosine direction.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from aifab.errors import Conflict, InvalidRequest, NotFound
from aifab.stores.pgvector import sql as q
from aifab.stores.pgvector.connection import DDL_LOCK, Pool, bootstrap, psycopg, register_vector
from aifab.stores.protocol import NAMESPACE_PATTERN, ChunkRecord, Filter, Hit

T = TypeVar("T")
MAX_DIMS = 2000  # HNSW on the `vector` type
MAX_EF = 1000  # pgvector's ceiling for hnsw.ef_search


class PgVectorStore:
    """A ``VectorStore`` in a PostgreSQL database with the pgvector extension.

    ``url`` is a libpq URL; SQLAlchemy-style ``postgresql+psycopg://`` is accepted. ``hnsw_m`` and
    ``hnsw_ef_construction`` apply to namespaces created by this instance; ``hnsw_ef_search`` to its queries.
    Thread-safe: up to ``pool_size`` operations run at once, each on its own connection.
    """

    def __init__(self, url: str, *, hnsw_m: int = 32, hnsw_ef_construction: int = 128, hnsw_ef_search: int = 128,
                 pool_size: int = 4) -> None:
        if not 2 <= hnsw_m <= 100:
            raise InvalidRequest(f"hnsw_m must be 2..100, not {hnsw_m}")
        if not 2 * hnsw_m <= hnsw_ef_construction <= 1000:
            raise InvalidRequest(f"hnsw_ef_construction must be {2 * hnsw_m}..1000, not {hnsw_ef_construction}")
        if not 1 <= hnsw_ef_search <= MAX_EF:
            raise InvalidRequest(f"hnsw_ef_search must be 1..{MAX_EF}, not {hnsw_ef_search}")
        self.m, self.ef_construction, self.ef_search = hnsw_m, hnsw_ef_construction, hnsw_ef_search
        self.iterative_scan = False
        self._vector_oid = 0
        # namespace -> (table, dims). Table names are never reused, so a stale entry (the namespace was
        # dropped elsewhere) can only name a missing table: UndefinedTable, and _run looks it up again.
        self._tables: dict[str, tuple[str, int]] = {}
        self._pool = Pool(url, pool_size, self._setup)
        self._run(lambda conn: None)  # connect now: a bad URL or a missing extension fails here

    def _setup(self, conn: psycopg.Connection) -> None:
        if not self._vector_oid:
            self.iterative_scan = bootstrap(conn, q.CATALOGUE_DDL)
        self._vector_oid = register_vector(conn)
        conn.execute(q.STAGE_DDL)
        # Session-wide, so that a plain query is one statement (no transaction for SET LOCAL).
        conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(self.ef_search),))
        if self.iterative_scan:
            conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', false)")

    def _run(self, fn: Callable[[psycopg.Connection], T], *, transaction: bool = True) -> T:
        """``fn`` on a pooled connection, in one transaction unless told otherwise. Runs it again, once,
        on a fresh connection when a pooled one died with a server restart, and once after a cached
        table turned out dropped."""
        stale_connection = stale_table = False
        while True:
            with self._pool.connection() as (conn, reused):
                try:
                    if not transaction:
                        return fn(conn)
                    with conn.transaction():
                        return fn(conn)
                except psycopg.OperationalError:
                    if reused and conn.broken and not stale_connection:
                        stale_connection = True
                        continue
                    raise
                except psycopg.errors.UndefinedTable as exc:
                    self._tables.clear()
                    if not stale_table:
                        stale_table = True
                        continue
                    raise NotFound(f"namespace dropped while in use: {exc}") from exc
                except psycopg.DataError as exc:
                    raise InvalidRequest(f"PostgreSQL rejected the data: {exc}") from exc

    def _table(self, conn: psycopg.Connection, namespace: str, *, fresh: bool = False) -> tuple[str, int]:
        """The namespace's table and dimensions; ``fresh`` skips the cache (whose dimensions may be stale)."""
        known = None if fresh else self._tables.get(namespace)
        if known is not None:
            return known
        row = conn.execute(f"SELECT tbl, dims FROM {q.CATALOGUE} WHERE name = %s", (namespace,)).fetchone()
        if row is None:
            raise NotFound(f"no namespace '{namespace}'")
        if conn.execute(q.has_rerank_column(row[0])).fetchone() is None:  # made before records had it
            conn.execute(q.add_rerank_column(row[0]))
        self._tables[namespace] = (row[0], row[1])
        return row[0], row[1]

    # -- namespaces -----------------------------------------------------------------------------------

    def create_namespace(self, namespace: str, dimensions: int) -> None:
        if not isinstance(namespace, str) or not re.fullmatch(NAMESPACE_PATTERN, namespace):
            raise InvalidRequest(f"invalid namespace name {namespace!r} (allowed: {NAMESPACE_PATTERN})")
        if not isinstance(dimensions, int) or not 1 <= dimensions <= MAX_DIMS:
            raise InvalidRequest(f"dimensions must be 1..{MAX_DIMS}, not {dimensions!r}")

        def create(conn: psycopg.Connection) -> None:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
            row = conn.execute(f"SELECT dims FROM {q.CATALOGUE} WHERE name = %s", (namespace,)).fetchone()
            if row is not None:
                if row[0] != dimensions:
                    raise Conflict(f"namespace '{namespace}' has {row[0]} dimensions, not {dimensions}")
                return
            row = conn.execute(f"SELECT nextval(pg_get_serial_sequence('{q.CATALOGUE}', 'id'))").fetchone()
            assert row is not None
            table_id = row[0]
            table = q.table_name(table_id)
            conn.execute(f"INSERT INTO {q.CATALOGUE} (id, name, dims, tbl, hnsw_m, hnsw_ef_construction) "
                         "VALUES (%s, %s, %s, %s, %s, %s)",
                         (table_id, namespace, dimensions, table, self.m, self.ef_construction))
            for statement in q.create_table(table, dimensions, self.m, self.ef_construction):
                conn.execute(statement)

        self._run(create)

    def drop_namespace(self, namespace: str) -> None:
        def drop(conn: psycopg.Connection) -> None:
            row = conn.execute(f"DELETE FROM {q.CATALOGUE} WHERE name = %s RETURNING tbl", (namespace,)).fetchone()
            if row is not None:
                conn.execute(q.sql.SQL("DROP TABLE IF EXISTS {}").format(q.sql.Identifier(row[0])))

        self._tables.pop(namespace, None)
        self._run(drop)

    @contextmanager
    def bulk_load(self, namespace: str, *, memory: str = "1GB") -> Iterator[None]:
        """Upserts inside this block skip the HNSW index, which is rebuilt in one pass when it ends (also
        on error): pgvector builds a graph in bulk many times faster than it inserts into one (200k x 384
        on 2 busy cores: ~7 min in all, against ~12-40 min of one-by-one inserts). Meant for a namespace that does not
        serve traffic yet (a new collection version): queries meanwhile are exact, so correct but slow, and
        the rebuild locks the namespace's writers out. ``memory`` is the build's ``maintenance_work_mem``;
        a graph that does not fit builds more slowly. Not part of the ``VectorStore`` protocol."""
        self._run(lambda conn: conn.execute(q.drop_hnsw_index(self._table(conn, namespace, fresh=True)[0])))
        try:
            yield
        finally:
            def build(conn: psycopg.Connection) -> None:
                row = conn.execute(f"SELECT tbl, hnsw_m, hnsw_ef_construction FROM {q.CATALOGUE} WHERE name = %s",
                                   (namespace,)).fetchone()
                if row is not None:  # dropped meanwhile: nothing to index
                    conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (memory,))
                    conn.execute(q.hnsw_index(*row))

            self._run(build)

    def namespaces(self) -> dict[str, int]:
        return self._run(lambda conn: dict(conn.execute(f"SELECT name, dims FROM {q.CATALOGUE}").fetchall()))

    # -- writes ---------------------------------------------------------------------------------------

    def upsert(self, namespace: str, records: Sequence[ChunkRecord]) -> None:
        def write(conn: psycopg.Connection) -> None:
            table, dims = self._table(conn, namespace, fresh=True)
            latest = {r.id: r for r in records}  # one row per id, the last one wins
            rows = [_row(r, dims) for r in latest.values()]
            if not rows:
                return
            with conn.cursor() as cur:
                with cur.copy(f"COPY {q.STAGE} ({q.COLUMNS}, embedding, rerank) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["text", "text", "text", "jsonb", "text[]", self._vector_oid, "bytea"])
                    for row in rows:
                        copy.write_row(row)
                cur.execute(q.sql.SQL(
                    "INSERT INTO {t} ({cols}, embedding, rerank) SELECT {cols}, embedding, rerank FROM {stage} "
                    "ORDER BY id ON CONFLICT (id) DO UPDATE SET document_id = EXCLUDED.document_id, "
                    "content = EXCLUDED.content, metadata = EXCLUDED.metadata, acl = EXCLUDED.acl, "
                    "embedding = EXCLUDED.embedding, rerank = EXCLUDED.rerank"
                ).format(t=q.sql.Identifier(table), cols=q.sql.SQL(q.COLUMNS), stage=q.sql.Identifier(q.STAGE)))

        self._run(write)

    def delete(self, namespace: str, ids: Iterable[str]) -> int:
        wanted = q.ids_param(list(ids))

        def remove(conn: psycopg.Connection) -> int:
            t = q.sql.Identifier(self._table(conn, namespace)[0])
            cur = conn.execute(q.sql.SQL("DELETE FROM {} WHERE id = ANY(%s::text[])").format(t), (wanted,))
            return cur.rowcount

        return self._run(remove)

    # -- reads ----------------------------------------------------------------------------------------

    def fetch(
        self, namespace: str, ids: Sequence[str], *, vectors: bool = False, rerank: bool = False
    ) -> list[ChunkRecord]:
        cols = q.COLUMNS + (", embedding" if vectors else ", NULL::vector") + (", rerank" if rerank else ", NULL::bytea")

        def read(conn: psycopg.Connection) -> list[ChunkRecord]:
            t = q.sql.Identifier(self._table(conn, namespace)[0])
            statement = q.sql.SQL("SELECT {} FROM {} WHERE id = ANY(%s::text[])").format(q.sql.SQL(cols), t)
            with conn.cursor(binary=True) as cur:
                return [_record(row) for row in cur.execute(statement, (q.ids_param(ids),))]

        return self._run(read, transaction=False)

    def document_chunks(self, namespace: str, document_id: str) -> set[str]:
        def read(conn: psycopg.Connection) -> set[str]:
            t = q.sql.Identifier(self._table(conn, namespace)[0])
            return {r[0] for r in conn.execute(q.sql.SQL("SELECT id FROM {} WHERE document_id = %s").format(t),
                                               (document_id,))}

        return self._run(read, transaction=False)

    def count(self, namespace: str) -> int:
        def read(conn: psycopg.Connection) -> int:
            t = q.sql.Identifier(self._table(conn, namespace)[0])
            return conn.execute(q.sql.SQL("SELECT count(*) FROM {}").format(t)).fetchone()[0]  # type: ignore[index]

        return self._run(read, transaction=False)

    def query(self, namespace: str, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        def search(conn: psycopg.Connection) -> list[Hit]:
            table, dims = self._table(conn, namespace)
            if np.shape(vector) != (dims,):  # or the namespace was recreated elsewhere
                table, dims = self._table(conn, namespace, fresh=True)
            qv = _vector(vector, dims, "the query")
            if k <= 0:
                return []
            cond, params = q.where(filter)
            statement, args = _dense(table, cond, k), [qv, *params, qv, k]
            rows: list[Any] = []
            if k <= self.ef_search:
                rows = conn.execute(statement, args).fetchall()
            elif k <= MAX_EF:  # HNSW returns at most ef_search rows
                with conn.transaction():
                    conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(k),))
                    rows = conn.execute(statement, args).fetchall()
            if len(rows) < k:  # too few passed the filter on the graph walk: exact scan of the matches
                with conn.transaction():
                    conn.execute("SELECT set_config('enable_indexscan', 'off', true)")
                    rows = conn.execute(statement, args).fetchall()
            return [Hit(r[0], 1.0 - float(r[-1]), _record(r[:-1])) for r in rows]

        return self._run(search, transaction=False)

    def lexical(self, namespace: str, text: str, k: int, filter: Filter | None = None) -> list[Hit]:
        source = q.or_query(text)

        def search(conn: psycopg.Connection) -> list[Hit]:
            table, _ = self._table(conn, namespace)
            if source is None or k <= 0:
                return []
            cond, params = q.where(filter)
            statement = q.sql.SQL(
                "SELECT {cols}, ts_rank_cd({w}, tsv, tq.query, 1) AS score FROM {t}, "
                "(SELECT to_tsquery('english', %s) || to_tsquery('simple', %s) AS query) tq "
                "WHERE tsv @@ tq.query AND {cond} ORDER BY score DESC, id LIMIT %s"
            ).format(cols=q.sql.SQL(q.COLUMNS), w=q.sql.Literal(q.RANK_WEIGHTS), t=q.sql.Identifier(table), cond=cond)
            rows = conn.execute(statement, [source, source, *params, k]).fetchall()
            return [Hit(r[0], float(r[-1]), _record(r[:-1])) for r in rows]

        return self._run(search, transaction=False)

    def close(self) -> None:
        self._pool.close()


def _dense(table: str, cond: q.sql.Composable, k: int) -> q.sql.Composed:
    # Relaxed iterative scans may return rows slightly out of order: the outer ORDER BY puts them right.
    return q.sql.SQL(
        "WITH hits AS MATERIALIZED (SELECT {cols}, embedding <=> %s AS distance FROM {t} WHERE {cond} "
        "ORDER BY embedding <=> %s LIMIT %s) SELECT * FROM hits ORDER BY distance, id"
    ).format(cols=q.sql.SQL(q.COLUMNS), t=q.sql.Identifier(table), cond=cond)


def _vector(value: Any, dims: int, what: str) -> np.ndarray:
    v = np.asarray(value, dtype=np.float32) if value is not None else None
    if v is None or v.shape != (dims,):
        raise InvalidRequest(f"{what} needs a vector of {dims} dimensions")
    norm = float(np.linalg.norm(v))
    if not math.isfinite(norm) or norm == 0.0:
        raise InvalidRequest(f"{what} has a zero or non-finite vector")
    return v


def _row(r: ChunkRecord, dims: int) -> tuple[Any, ...]:
    v = _vector(r.vector, dims, f"chunk '{r.id}'")
    try:
        json.dumps(r.metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"chunk '{r.id}' has metadata that is not JSON: {exc}") from exc
    return (r.id, r.document_id, r.text, q.Jsonb(r.metadata), list(r.acl), v, r.rerank)


def _record(row: Sequence[Any]) -> ChunkRecord:
    vector = row[5] if len(row) > 5 else None
    rerank = bytes(row[6]) if len(row) > 6 and row[6] is not None else None
    return ChunkRecord(id=row[0], document_id=row[1], text=row[2], vector=vector, metadata=row[3], acl=tuple(row[4]),
                       rerank=rerank)
