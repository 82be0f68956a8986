"""The ``sql`` connector's PostgreSQL side: every query in a ``READ ONLY`` transaction, with statement, lock
and idle timeouts, always rolled back, read through a server-side cursor.

The cursor matters twice: PostgreSQL declares a cursor only for one plain query (a second statement, a
data-modifying WITH or a ``COPY`` is its own error, whatever the static check thought), and it fetches
only the rows asked for, so a huge result never reaches this process. The session's ``search_path`` is
pinned to the allowed tables' schemas, and a bare table name is allowed only where it resolves, under
that path, to an allowed table.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import make_url

from aifab.errors import ConfigError, MissingDependency
from aifab.tools.connectors.sql_check import AllowedTables, Dialect
from aifab.tools.protocol import ToolFailed, ToolRefused

try:
    import psycopg
    from psycopg import sql
    from psycopg.raw_cursor import AsyncRawServerCursor
except ImportError:  # pragma: no cover - the pg extra is not installed
    psycopg = None  # type: ignore[assignment]

RESOLVE = ("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
           "WHERE c.oid = to_regclass(%s)")
COLUMNS = ("SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
           "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum")
FAILED_CLASSES = ("08", "53", "57", "58", "XX")  # connection, resources, operator intervention, system, internal
TIMEOUTS = ("57014", "55P03")  # statement_timeout, lock_timeout


class PostgresDatabase:
    """One connection, one query at a time; reconnects after the database went away."""

    dialect: Dialect = "postgres"
    placeholders = "$1, $2, ..."

    def __init__(self, conninfo: str, allowed: AllowedTables, columns: dict[str, list[tuple[str, str]]],
                 search_path: str, timeout_s: float) -> None:
        self.conninfo, self.allowed, self.columns, self.timeout_s = conninfo, allowed, columns, timeout_s
        self.search_path = search_path
        ms = max(1, int(timeout_s * 1000))
        self._begin = (f"BEGIN READ ONLY; SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}; "
                       f"SET LOCAL idle_in_transaction_session_timeout = {ms + 1000}")
        self._conn: Any = None
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str, tables: list[str], timeout_s: float) -> PostgresDatabase:
        """Connect, resolve each allowed table in the catalog (a missing one is a :class:`ConfigError`),
        read their columns for the tool's description, and pin the search path."""
        if psycopg is None:
            raise MissingDependency("psycopg", "pg")
        conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await cls._connect(conninfo, timeout_s, None)
        try:
            resolved: list[tuple[str, str]] = []
            for entry in tables:
                row = await (await conn.execute(RESOLVE, (entry,))).fetchone()
                if row is None:
                    raise ConfigError(f"table '{entry}' is not in the PostgreSQL database")
                resolved.append((row[0], row[1]))
            schemas = list(dict.fromkeys(s for s, _ in resolved))
            path = ", ".join(sql.Identifier(s).as_string(conn) for s in schemas)
            await conn.execute(sql.SQL("SET search_path TO {}").format(sql.SQL(path)))
            bare = set()
            for s, r in resolved:  # a bare name is allowed only where it means the allowed table
                row = await (await conn.execute(RESOLVE, (sql.Identifier(r).as_string(conn),))).fetchone()
                if row is not None and (row[0], row[1]) == (s, r):
                    bare.add(r)
            columns: dict[str, list[tuple[str, str]]] = {}
            for s, r in resolved:
                shown = r if r in bare else f"{s}.{r}"
                qualified = sql.Identifier(s, r).as_string(conn)
                columns[shown] = [(c, t) for c, t in await (await conn.execute(COLUMNS, (qualified,))).fetchall()]
        except psycopg.Error as exc:
            await conn.close()
            raise ConfigError(f"cannot read the allowed tables: {_message(exc)}") from None
        except BaseException:
            await conn.close()
            raise
        allowed = AllowedTables(frozenset(resolved), frozenset(bare), tuple(columns))
        db = cls(conninfo, allowed, columns, path, timeout_s)
        db._conn = conn
        return db

    @staticmethod
    async def _connect(conninfo: str, timeout_s: float, search_path: str | None) -> Any:
        conn = await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, connect_timeout=max(2, math.ceil(min(timeout_s, 10))),
            application_name="aifab-sql-tool")
        if search_path is not None:
            await conn.execute(sql.SQL("SET search_path TO {}").format(sql.SQL(search_path)))
        return conn

    async def run(self, query: str, params: Sequence[Any], max_rows: int) -> tuple[list[str], list[tuple[Any, ...]]]:
        async with self._lock:
            if self._conn is None or self._conn.closed:
                try:
                    self._conn = await self._connect(self.conninfo, self.timeout_s, self.search_path)
                except psycopg.Error as exc:
                    raise ToolFailed(f"the database cannot be reached: {_message(exc)}") from None
            conn = self._conn
            failure: Exception | None = None
            try:
                await conn.execute(self._begin)
                cursor = AsyncRawServerCursor(conn, "aifab_tool_query")
                try:
                    await cursor.execute(query, list(params))
                    rows = await cursor.fetchmany(max_rows)
                    columns = [d.name for d in cursor.description or []]
                finally:
                    await cursor.close()
            except psycopg.Error as exc:
                failure = self._error(exc)
            except BaseException:  # cancelled mid-query: the connection's state is unknown
                await self._drop()
                raise
            try:
                await conn.execute("ROLLBACK")
            except psycopg.Error:
                await self._drop()
            if failure is not None:
                raise failure
            return columns, rows

    def _error(self, exc: Any) -> Exception:
        state = exc.sqlstate or ""
        if state in TIMEOUTS:
            return ToolFailed(f"the query ran past {self.timeout_s:g} s and was stopped", status_code=504)
        if not state or state[:2] in FAILED_CLASSES:
            return ToolFailed(f"the database failed: {_message(exc)}")
        return ToolRefused(f"the database refused the query: {_message(exc)}")

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except psycopg.Error:
                pass  # already broken: nothing left to release

    async def aclose(self) -> None:
        await self._drop()


def _message(exc: Any) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return primary or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
