"""Queries that try to write, escape the allow-list or reach outside the database, for the ``sql`` tool's
tests and ``benchmarks/tools_sql.py``: each must be refused (or stopped at the time limit) on SQLite and
on PostgreSQL alike, and leave the database as it was.

The same data on both databases: ``users`` and ``orders`` (the tool allows them), ``secrets`` (it does
not). :func:`sqlite_snapshot` and :func:`postgres_snapshot` say whether anything changed: the file's
bytes; every table's rows plus the catalog's object lists (relations, functions, schemas, roles, large
objects, settings) and sequence positions. Neither looks at sizes alone.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aifab.tools import Toolbox, ToolFailed, ToolRefused

ALLOWED = ["users", "orders"]
SCHEMA = [
    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT)",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER, total NUMERIC(10, 2))",
    "CREATE TABLE secrets (id INTEGER PRIMARY KEY, value TEXT)",
    "INSERT INTO users VALUES (1, 'Ann', 'ann@example.com'), (2, 'Bob', 'bob@example.com'), (3, 'Cy', NULL)",
    "INSERT INTO orders VALUES (1, 1, 9.50), (2, 1, 20.00), (3, 2, 5.25)",
    "INSERT INTO secrets VALUES (1, 'the vault code is 1234')",
]
POSTGRES_ONLY = ["CREATE SEQUENCE order_numbers"]
TRACE = "/tmp/aifab-sql-attack"  # files the attacks try to create; a snapshot notes whether any exists
TRACE_FILES = [f"{TRACE}-{s}" for s in ("program", "copy.db", "attached.db", "out")]

ATTACKS: list[tuple[str, str, list[Any]]] = [
    ("drop table", "DROP TABLE users", []),
    ("delete", "DELETE FROM users", []),
    ("update", "UPDATE users SET name = 'x'", []),
    ("insert", "INSERT INTO users (id, name) VALUES (99, 'x')", []),
    ("replace into", "REPLACE INTO users (id, name) VALUES (1, 'x')", []),
    ("stacked delete", "SELECT 1; DELETE FROM users", []),
    ("stacked commit then delete", "SELECT 1; COMMIT; DELETE FROM users", []),
    ("begin, delete, commit", "BEGIN; DELETE FROM users; COMMIT", []),
    ("semicolon in a block comment", "SELECT 1 /* ; */; DELETE FROM users", []),
    ("line comment then newline", "SELECT 1 --\n; DELETE FROM users", []),
    ("nested comment (closes early in SQLite)",
     "SELECT * FROM users /* /* */ ; DELETE FROM users; -- */ WHERE id IN (SELECT id FROM secrets)", []),
    ("semicolon in a dollar quote", "SELECT $$;$$; DELETE FROM users", []),
    ("backslash before a quote", "SELECT '\\'; DELETE FROM users; --'", []),
    ("fullwidth semicolon", "SELECT 1\uff1b DELETE FROM users", []),
    ("fullwidth keyword", "\uff24\uff25\uff2c\uff25\uff34\uff25 FROM users", []),
    ("zero-width space in a table name", "SELECT * FROM sec\u200brets", []),
    ("data-modifying CTE", "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d", []),
    ("SELECT INTO", "SELECT * INTO stolen FROM users", []),
    ("CREATE TEMP TABLE", "CREATE TEMP TABLE stolen AS SELECT * FROM users", []),
    ("ALTER TABLE", "ALTER TABLE users ADD COLUMN x INTEGER", []),
    ("TRUNCATE", "TRUNCATE users", []),
    ("ATTACH", f"ATTACH DATABASE '{TRACE}-attached.db' AS evil", []),
    ("PRAGMA writable_schema", "PRAGMA writable_schema = 1", []),
    ("pragma table function", "SELECT * FROM pragma_table_info('secrets')", []),
    ("VACUUM INTO", f"VACUUM INTO '{TRACE}-copy.db'", []),
    ("load_extension", "SELECT load_extension('/tmp/aifab-evil.so')", []),
    ("writefile", f"SELECT writefile('{TRACE}-out', 'x')", []),
    ("COPY TO PROGRAM", f"COPY users TO PROGRAM 'touch {TRACE}-program'", []),
    ("COPY FROM a file", "COPY users FROM '/etc/passwd'", []),
    ("EXPLAIN ANALYZE a delete", "EXPLAIN ANALYZE DELETE FROM users", []),
    ("DO block", "DO $$ BEGIN DELETE FROM users; END $$", []),
    ("CREATE FUNCTION", "CREATE FUNCTION f() RETURNS int AS 'SELECT 1' LANGUAGE sql", []),
    ("SET ROLE", "SET ROLE postgres", []),
    ("set_config read-only off", "SELECT set_config('transaction_read_only', 'off', true)", []),
    ("pg_sleep", "SELECT pg_sleep(30)", []),
    ("schema-qualified pg_sleep", "SELECT pg_catalog.pg_sleep(30)", []),
    ("lo_import", "SELECT lo_import('/etc/passwd')", []),
    ("pg_read_file", "SELECT pg_read_file('/etc/passwd')", []),
    ("dblink", "SELECT * FROM dblink('dbname=postgres', 'DELETE FROM users') AS t(x text)", []),
    ("nextval", "SELECT nextval('order_numbers')", []),
    ("advisory lock", "SELECT pg_advisory_lock(1)", []),
    ("terminate backends", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity", []),
    ("query_to_xml over secrets", "SELECT query_to_xml('SELECT * FROM secrets', true, true, '')", []),
    ("FOR UPDATE", "SELECT * FROM users FOR UPDATE", []),
    ("table not allowed", "SELECT * FROM secrets", []),
    ("schema-qualified table not allowed", "SELECT * FROM public.secrets", []),
    ("table not allowed in a subquery", "SELECT name FROM users WHERE id IN (SELECT id FROM secrets)", []),
    ("CTE name shadowing after use", "WITH a AS (SELECT * FROM secrets), secrets AS (SELECT 1) SELECT * FROM a", []),
    ("sqlite_master", "SELECT * FROM sqlite_master", []),
    ("pg_catalog table", "SELECT * FROM pg_catalog.pg_authid", []),
    ("information_schema", "SELECT * FROM information_schema.tables", []),
    ("endless recursive CTE",
     "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r", []),
]


@dataclass
class Outcome:
    name: str
    refused: bool  # ToolRefused, or stopped at the time limit (ToolFailed 504)
    message: str


async def run_attacks(box: Toolbox, tool: str,
                      attacks: list[tuple[str, str, list[Any]]] | None = None) -> list[Outcome]:
    """Every attack (or those given) through ``box``, with the checks a real call gets; what happened."""
    out = []
    for name, query, params in ATTACKS if attacks is None else attacks:
        try:
            result = await box.call(tool, {"query": query, "params": params})
            out.append(Outcome(name, False, f"ran: {result.text[:80]!r}"))
        except ToolRefused as exc:
            out.append(Outcome(name, True, exc.message))
        except ToolFailed as exc:
            out.append(Outcome(name, exc.status_code == 504, exc.message))
    return out


def make_sqlite(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        for statement in SCHEMA:
            conn.execute(statement)
    conn.close()
    return path


def make_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        for statement in SCHEMA + POSTGRES_ONLY:
            conn.execute(statement)


def _traces() -> str:
    return ",".join(p for p in TRACE_FILES if Path(p).exists())


def sqlite_snapshot(path: Path) -> str:
    """The file's bytes (and any journal beside it) and the trace files."""
    digest = hashlib.sha256(path.read_bytes())
    for side in ("-wal", "-journal", "-shm"):
        digest.update(f"{side}:{Path(str(path) + side).exists()}".encode())
    return f"{digest.hexdigest()} traces={_traces()}"


POSTGRES_STATE = [
    "SELECT oid::int8, relname, relkind, relnamespace::int8 FROM pg_class ORDER BY oid",
    "SELECT count(*), max(oid::int8) FROM pg_proc",
    "SELECT oid::int8, nspname FROM pg_namespace ORDER BY oid",
    "SELECT rolname, rolsuper FROM pg_roles ORDER BY rolname",
    "SELECT oid::int8 FROM pg_largeobject_metadata ORDER BY oid",
    "SELECT datname FROM pg_database ORDER BY datname",
    "SELECT setdatabase::int8, setrole::int8, setconfig::text FROM pg_db_role_setting ORDER BY 1, 2",
    "SELECT extname FROM pg_extension ORDER BY extname",
    "SELECT last_value, is_called FROM order_numbers",
]


def postgres_snapshot(url: str) -> str:
    """Every user table's rows, the catalog's object lists and the sequence's position, hashed."""
    import psycopg

    digest = hashlib.sha256()
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        tables = conn.execute("SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
                              "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1").fetchall()
        for (table,) in tables:
            rows = conn.execute(f"SELECT t::text FROM {table} t ORDER BY 1").fetchall()
            digest.update(f"{table}:{rows}".encode())
        for query in POSTGRES_STATE:
            digest.update(repr(conn.execute(query).fetchall()).encode())
    return f"{digest.hexdigest()} traces={_traces()}"


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
