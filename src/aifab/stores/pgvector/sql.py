"""SQL for the pgvector store. User text never becomes SQL: namespaces map to generated table names
(``aifab_vec_<n>``, from the catalogue's sequence), values are bound parameters, identifiers are quoted
by ``psycopg.sql``, and lexical queries are rebuilt from plain words.

Full-text configuration: every chunk is indexed twice in one ``tsvector``, ``english`` (stemmed, stop
words dropped) at weight A and ``simple`` (every word as written, lower-cased) at weight B. Stemming lets
"generators" find "generator"; the ``simple`` half keeps stop-word-only queries and exact word forms
(code identifiers such as ``asyncio``) matching, and ranks an exact form above a mere shared stem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from aifab.stores.lexical import query_terms
from aifab.stores.protocol import Filter

CATALOGUE = "aifab_vector_namespaces"
CATALOGUE_DDL = [
    b"""CREATE TABLE IF NOT EXISTS aifab_vector_namespaces (
        id bigserial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        dims integer NOT NULL,
        tbl text NOT NULL UNIQUE,
        hnsw_m integer NOT NULL,
        hnsw_ef_construction integer NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now())""",
]
STAGE = "aifab_vec_stage"
# Per connection: COPY lands here, then one INSERT ... ON CONFLICT moves it; emptied at every commit.
STAGE_DDL = b"""CREATE TEMP TABLE IF NOT EXISTS aifab_vec_stage (
    id text, document_id text, content text, metadata jsonb, acl text[], embedding vector, rerank bytea
) ON COMMIT DELETE ROWS"""
COLUMNS = "id, document_id, content, metadata, acl"
# Weights are {D, C, B, A}: english (A) counts fully, the simple half (B) is a tie-breaker.
RANK_WEIGHTS = "{0, 0, 0.25, 1}"
MAX_TERMS = 64


def table_name(table_id: int) -> str:
    return f"aifab_vec_{int(table_id)}"


def hnsw_index(table: str, m: int, ef_construction: int) -> sql.Composed:
    return sql.SQL(
        "CREATE INDEX IF NOT EXISTS {i} ON {t} USING hnsw (embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {ef})"
    ).format(i=sql.Identifier(f"{table}_hnsw"), t=sql.Identifier(table), m=sql.Literal(m), ef=sql.Literal(ef_construction))


def drop_hnsw_index(table: str) -> sql.Composed:
    return sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(f"{table}_hnsw"))


def has_rerank_column(table: str) -> sql.Composed:
    """Whether a namespace table has the ``rerank`` column (tables made before it existed do not)."""
    return sql.SQL("SELECT 1 FROM pg_attribute WHERE attrelid = {}::regclass AND attname = 'rerank' "
                   "AND NOT attisdropped").format(sql.Literal(table))


def add_rerank_column(table: str) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS rerank bytea").format(sql.Identifier(table))


def create_table(table: str, dims: int, m: int, ef_construction: int) -> list[sql.Composed]:
    t = sql.Identifier(table)
    return [
        sql.SQL(
            """CREATE TABLE {t} (
            id text PRIMARY KEY,
            document_id text NOT NULL,
            content text NOT NULL,
            metadata jsonb NOT NULL DEFAULT '{{}}',
            acl text[] NOT NULL DEFAULT '{{}}',
            embedding vector({dims}) NOT NULL,
            rerank bytea,
            tsv tsvector GENERATED ALWAYS AS (
                setweight(to_tsvector('english'::regconfig, content), 'A')
                || setweight(to_tsvector('simple'::regconfig, content), 'B')) STORED)"""
        ).format(t=t, dims=sql.Literal(dims)),
        hnsw_index(table, m, ef_construction),
        sql.SQL("CREATE INDEX ON {t} USING gin (tsv)").format(t=t),
        sql.SQL("CREATE INDEX ON {t} USING gin (acl)").format(t=t),
        sql.SQL("CREATE INDEX ON {t} USING gin (metadata jsonb_path_ops)").format(t=t),
        sql.SQL("CREATE INDEX ON {t} (document_id)").format(t=t),
    ]


def where(filter: Filter | None) -> tuple[sql.Composable, list[Any]]:
    """``WHERE`` conditions (always at least ``TRUE``) and their parameters for a ``Filter``.

    ACL: public chunks (no tags) or any shared tag. ``where``: ``document_id`` by equality, metadata keys by
    JSON containment of ``{key: value}``, which for scalars is equality (an array value does not contain a
    scalar at this depth, matching ``Filter.allows``); a list of values means any of them.
    """
    parts: list[sql.Composable] = []
    params: list[Any] = []
    if filter is not None and filter.acl is not None:
        parts.append(sql.SQL("(acl = '{}' OR acl && %s::text[])"))
        params.append(sorted(filter.acl))
    for key, want in (filter.where.items() if filter is not None else ()):
        options = list(want) if isinstance(want, list | tuple | set | frozenset) else [want]
        if key == "document_id":
            parts.append(sql.SQL("document_id = ANY(%s::text[])"))
            params.append([o for o in options if isinstance(o, str)])
        elif not options:
            parts.append(sql.SQL("FALSE"))
        else:
            parts.append(sql.SQL("({})").format(sql.SQL(" OR ").join([sql.SQL("metadata @> %s")] * len(options))))
            params.extend(Jsonb({key: o}) for o in options)
    if not parts:
        return sql.SQL("TRUE"), params
    return sql.SQL(" AND ").join(parts), params


def or_query(text: str) -> str | None:
    """A ``to_tsquery`` source that ORs the words of ``text``, or None when it has none.

    Words are ``\\w+`` runs (letters, digits, underscore), so they carry no tsquery syntax and no quote; each
    is still quoted, so the server's parser splits and normalises it as it did the indexed text.
    """
    terms = query_terms(text, MAX_TERMS)
    return " | ".join(f"'{t}'" for t in terms) if terms else None


def ids_param(ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ids))
