"""The ``sql`` connector: one tool per ``[tools.NAME]`` entry that runs a read-only query on a SQLite file
or a PostgreSQL database, over the allow-listed tables only.

Read-only by construction, in layers: every query first passes :func:`check_query` (one SELECT/WITH, allowed
tables, no function that reaches outside the query); then the database itself refuses what the check
might have missed. SQLite: the file is opened ``mode=ro`` with ``query_only`` and an authorizer that allows
only reading the allowed tables and calling pure functions (no ATTACH, no PRAGMA, no writes, no temporary
tables), and a progress handler stops a query at the time limit. PostgreSQL (:mod:`.sql_pg`): a ``READ ONLY``
transaction with statement and lock timeouts that is always rolled back, and a server-side cursor, which
PostgreSQL declares only for a plain query (one statement, no data-modifying WITH).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from aifab.config import SqlToolSettings
from aifab.errors import ConfigError
from aifab.tools.box import connector
from aifab.tools.connectors.sql_check import AllowedTables, Dialect, check_query
from aifab.tools.protocol import Tool, ToolFailed, ToolRefused, ToolResult, ToolSpec

MAX_QUERY_CHARS = 20_000
MAX_VALUE_BYTES = 10_000_000  # SQLite: a longer string or blob (printf('%.*c', 1e9, 'x')) is an error, not 1 GB


class Database(Protocol):
    """What the tool needs of a database: how it spells queries, what may be read, and a bounded run."""

    dialect: Dialect
    allowed: AllowedTables
    columns: dict[str, list[tuple[str, str]]]  # shown table name -> [(column, type)]
    placeholders: str

    async def run(self, query: str, params: Sequence[Any], max_rows: int) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and at most ``max_rows`` rows, read in a read-only session."""
        ...

    async def aclose(self) -> None: ...


class SqlTool:
    """The tool: checks the query, runs it on its :class:`Database`, returns a compact table."""

    def __init__(self, name: str, settings: SqlToolSettings, db: Database) -> None:
        self.db, self.max_rows = db, settings.max_rows
        kind = "SQLite" if db.dialect == "sqlite" else "PostgreSQL"
        first = settings.description or f"Run a read-only SQL query on the {kind} database '{name}'."
        tables = "\n".join(f"- {t}({', '.join(f'{c} {ty}'.strip() for c, ty in cols)})"
                           for t, cols in db.columns.items())
        description = (f"{first}\nTables:\n{tables}\nRead-only SELECT/WITH, one statement, these tables only; "
                       f"at most {settings.max_rows} rows. Placeholders: {db.placeholders}, values in \"params\".")
        self._spec = ToolSpec(name, description, {
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS,
                          "description": f"one {kind} SELECT or WITH query"},
                "params": {"type": "array", "maxItems": 100, "description": "values for the placeholders, in order",
                           "items": {"type": ["string", "number", "integer", "boolean", "null"]}},
            },
            "required": ["query"],
            "additionalProperties": False,
        })
        self._closed = False

    @property
    def spec(self) -> ToolSpec:
        return self._spec

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        query, params = arguments["query"], list(arguments.get("params") or [])
        check_query(query, self.db.dialect, self.db.allowed)
        columns, rows = await self.db.run(query, params, self.max_rows + 1)
        truncated = len(rows) > self.max_rows
        rows = rows[: self.max_rows]
        data_rows = [[_value(v) for v in row] for row in rows]
        return ToolResult(_table(columns, data_rows, truncated), data={"columns": columns, "rows": data_rows},
                          truncated=truncated, meta={"rows": len(rows), "truncated": truncated})

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.db.aclose()


def _value(v: Any) -> Any:
    """A database value as JSON: numbers, text, null as they are; the rest as text a model can read."""
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if v == v and abs(v) != float("inf") else str(v)
    if isinstance(v, bytes | bytearray | memoryview):
        raw = bytes(v)
        return "\\x" + raw.hex() if len(raw) <= 32 else f"<{len(raw)} bytes>"
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return [_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _value(x) for k, x in v.items()}
    return str(v)


def _cell(v: Any) -> str:
    if v is None:
        return "NULL"
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    return text.replace("\n", "\\n").replace("|", "\\|")


def _table(columns: list[str], rows: list[list[Any]], truncated: bool) -> str:
    """Pipe-separated, a header line first: the shape small models read best in our tries."""
    lines = [" | ".join(columns)] + [" | ".join(_cell(v) for v in row) for row in rows]
    if truncated:
        lines.append(f"(first {len(rows)} rows; there are more: filter, aggregate or add LIMIT)")
    else:
        lines.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(lines)


@connector("sql")
async def open_sql(name: str, settings: SqlToolSettings) -> list[Tool]:
    try:
        url = make_url(settings.url)
    except ArgumentError:
        raise ConfigError(f"tool '{name}': url is not a database URL (sqlite:///path.db or "
                          "postgresql://user@host/db)") from None
    db: Database
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigError(f"tool '{name}': a sqlite url names a file: sqlite:///path/to.db")
        db = SqliteDatabase(Path(url.database), settings.tables, settings.timeout_s)
    elif url.get_backend_name() == "postgresql":
        from aifab.tools.connectors.sql_pg import PostgresDatabase

        db = await PostgresDatabase.open(settings.url, settings.tables, settings.timeout_s)
    else:
        raise ConfigError(f"tool '{name}': only sqlite:/// and postgresql:// databases, not {url.drivername}")
    return [SqlTool(name, settings, db)]


# SQLite functions that only compute: a query may call these and nothing else (no load_extension,
# readfile/writefile, fts3_tokenizer, randomblob/zeroblob sized by the query).
SQLITE_FUNCTIONS = frozenset({
    "abs", "avg", "char", "coalesce", "count", "group_concat", "string_agg", "hex", "ifnull", "iif", "instr",
    "length", "like", "glob", "lower", "ltrim", "max", "min", "nullif", "printf", "format", "quote", "replace",
    "round", "rtrim", "sign", "substr", "substring", "sum", "total", "trim", "typeof", "unicode", "upper",
    "date", "time", "datetime", "julianday", "unixepoch", "strftime", "timediff", "octet_length", "concat",
    "concat_ws", "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
    "first_value", "last_value", "nth_value", "json", "json_array", "json_array_length", "json_extract",
    "json_object", "json_type", "json_valid", "json_quote", "json_group_array", "json_group_object",
    "likely", "unlikely", "likelihood", "acos", "asin", "atan", "atan2", "ceil", "ceiling", "cos",
    "degrees", "exp", "floor", "ln", "log", "log10", "log2", "mod", "pi", "pow", "power", "radians", "sin",
    "sqrt", "tan", "trunc", "soundex",
})
_ACTIONS = {getattr(sqlite3, n): n.removeprefix("SQLITE_").replace("_", " ") for n in (
    "SQLITE_CREATE_INDEX", "SQLITE_CREATE_TABLE", "SQLITE_CREATE_TEMP_INDEX", "SQLITE_CREATE_TEMP_TABLE",
    "SQLITE_CREATE_TEMP_TRIGGER", "SQLITE_CREATE_TEMP_VIEW", "SQLITE_CREATE_TRIGGER", "SQLITE_CREATE_VIEW",
    "SQLITE_DELETE", "SQLITE_DROP_INDEX", "SQLITE_DROP_TABLE", "SQLITE_DROP_TEMP_INDEX", "SQLITE_DROP_TEMP_TABLE",
    "SQLITE_DROP_TEMP_TRIGGER", "SQLITE_DROP_TEMP_VIEW", "SQLITE_DROP_TRIGGER", "SQLITE_DROP_VIEW",
    "SQLITE_INSERT", "SQLITE_PRAGMA", "SQLITE_TRANSACTION", "SQLITE_UPDATE", "SQLITE_ATTACH", "SQLITE_DETACH",
    "SQLITE_ALTER_TABLE", "SQLITE_REINDEX", "SQLITE_ANALYZE", "SQLITE_CREATE_VTABLE", "SQLITE_DROP_VTABLE",
    "SQLITE_SAVEPOINT") if hasattr(sqlite3, n)}


class SqliteDatabase:
    """A SQLite file, read-only: ``mode=ro`` + ``query_only`` + an authorizer that allows reading the
    allowed tables and calling :data:`SQLITE_FUNCTIONS`, nothing else. An allowed view reads only where the
    tables it reads are allowed too: SQLite names a view and a WITH query alike to the authorizer, so a
    view's name cannot vouch for its tables. Calls run one at a time in a worker thread; ``clock`` is
    injectable for the time limit."""

    dialect: Dialect = "sqlite"
    placeholders = "? (or ?1, ?2)"

    def __init__(self, path: Path, tables: list[str], timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not path.is_file():  # sqlite would create an empty database there: never
            raise ConfigError(f"no SQLite database at {path}: the sql tool reads an existing file, it never creates one")
        self.path, self.timeout_s, self.clock = path, timeout_s, clock
        conn, self._catalog = self._connect(), self._connect()
        try:
            self.columns = self._read_schema(conn, tables)
            self._modules = {r[0].lower() for r in conn.execute("PRAGMA module_list")}
        except BaseException:
            conn.close()
            self._catalog.close()
            raise
        self.allowed = AllowedTables(frozenset(), frozenset(t.lower() for t in self.columns), tuple(self.columns))
        conn.set_authorizer(self._authorize)
        conn.set_progress_handler(self._past_deadline, 1000)
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()  # one statement at a time: a timed-out call's thread may still be finishing
        self._deadline = 0.0
        self._denied: str | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{quote(str(self.path.resolve()))}?mode=ro", uri=True, check_same_thread=False,
                               isolation_level=None, timeout=min(self.timeout_s, 5.0))
        conn.execute("PRAGMA query_only = 1")
        conn.execute("PRAGMA trusted_schema = 0")  # a view or trigger cannot call an unsafe function
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        return conn

    def _is_object(self, name: str) -> bool:
        """Whether ``name`` is a table, view or virtual table (rather than a WITH query's result, which
        ``count(*)`` reads by its name). Asked of a second connection: the authorizer runs mid-prepare."""
        low = name.lower()
        if low.startswith(("sqlite_", "pragma_")) or low in self._modules:
            return True
        found = self._catalog.execute("SELECT 1 FROM sqlite_master WHERE lower(name) = ?", (low,)).fetchone()
        return found is not None

    @staticmethod
    def _read_schema(conn: sqlite3.Connection, tables: list[str]) -> dict[str, list[tuple[str, str]]]:
        names = {r[0].lower(): r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        out: dict[str, list[tuple[str, str]]] = {}
        for entry in tables:
            bare = entry.removeprefix("main.")
            if bare.lower() not in names:
                raise ConfigError(f"table '{entry}' is not in the SQLite database (tables: {', '.join(names.values())})")
            name = names[bare.lower()]
            quoted = '"' + name.replace('"', '""') + '"'
            out[name] = [(r[1], r[2] or "") for r in conn.execute(f"PRAGMA table_info({quoted})")]
        return out

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, dbname: str | None,
                   source: str | None) -> int:
        if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            if dbname in (None, "main") and arg1 is not None and (
                    arg1.lower() in self.allowed.bare or not self._is_object(arg1)):
                return sqlite3.SQLITE_OK
            self._denied = f"table '{arg1}' is not allowed (allowed: {', '.join(self.allowed.shown)})"
        elif action == sqlite3.SQLITE_FUNCTION:
            if (arg2 or "").lower() in SQLITE_FUNCTIONS:
                return sqlite3.SQLITE_OK
            self._denied = f"function '{arg2}' is not allowed"
        else:
            self._denied = f"only SELECT or WITH queries are allowed (the database saw {_ACTIONS.get(action, action)})"
        return sqlite3.SQLITE_DENY

    def _past_deadline(self) -> int:
        return 1 if self.clock() > self._deadline else 0

    async def run(self, query: str, params: Sequence[Any], max_rows: int) -> tuple[list[str], list[tuple[Any, ...]]]:
        return await asyncio.to_thread(self._run, query, params, max_rows)

    def _run(self, query: str, params: Sequence[Any], max_rows: int) -> tuple[list[str], list[tuple[Any, ...]]]:
        with self._lock:
            if self._conn is None:
                raise ToolFailed("the database is closed")
            self._denied, self._deadline = None, self.clock() + self.timeout_s
            try:
                cursor = self._conn.execute(query, tuple(params))
                try:
                    return [d[0] for d in cursor.description or []], cursor.fetchmany(max_rows)
                finally:
                    cursor.close()
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> Exception:
        name = getattr(exc, "sqlite_errorname", "")
        if self._denied is not None:
            return ToolRefused(self._denied)
        if name == "SQLITE_INTERRUPT":
            return ToolFailed(f"the query ran past {self.timeout_s:g} s and was stopped", status_code=504)
        if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError) or name in (
                "SQLITE_ERROR", "SQLITE_AUTH", "SQLITE_READONLY", "SQLITE_TOOBIG", "SQLITE_RANGE", "SQLITE_MISMATCH"):
            return ToolRefused(f"the database refused the query: {exc}")
        return ToolFailed(f"the database failed: {exc}")

    async def aclose(self) -> None:
        await asyncio.to_thread(self._close)  # waits for a statement still running in its thread

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._catalog.close()
                self._conn = None
