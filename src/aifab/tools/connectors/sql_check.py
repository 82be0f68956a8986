"""The static check every ``sql`` tool query passes before it reaches the database: one SELECT/WITH
statement, tables only from the allow-list, no function that reaches outside the query.

It parses with a real SQL parser (sqlglot), so comments (``--``, nested ``/* */``), string literals and
PostgreSQL dollar quotes cannot hide a second statement from it. It is one layer of several, not the only
one: the database itself is opened read-only (SQLite: ``mode=ro`` and an authorizer that allows only reads
of the allowed tables; PostgreSQL: a ``READ ONLY`` transaction that is always rolled back, and a cursor
that PostgreSQL only declares for a plain query), so a query the parser misreads still cannot write.
Where the parser cannot read a query at all, the query is refused: the model is told to write plain SQL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from aifab.tools.protocol import ToolRefused

Dialect = Literal["postgres", "sqlite"]

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its "falling back to Command" warnings: we refuse those

# Functions that reach outside the query (files, other servers, sessions, sequences, locks, sleeping) or run
# a query held in a string (which would escape the table check). PostgreSQL's pg_* admin functions are all
# refused but the few harmless ones below; SQLite's connections also have an allow-list in their authorizer.
DENIED_FUNCTIONS = frozenset({
    "set_config", "current_setting", "nextval", "setval", "currval", "lastval", "copy",
    "ts_stat", "ts_rewrite", "connectby", "xmlexists", "gin_clean_pending_list",
    "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "zeroblob", "randomblob",
})
DENIED_PREFIXES = ("pg_", "lo_", "dblink", "txid_", "brin_", "binary_upgrade_", "crosstab", "pragma_", "sqlite_",
                   "fts3", "fts4", "fts5")
DENIED_PATTERN = re.compile(r".*_to_xml")  # query_to_xml, table_to_xml, cursor_to_xml...: they run what they name
HARMLESS = frozenset({"pg_typeof", "pg_size_pretty", "pg_column_size", "sqlite_version"})

# Statement kinds refused anywhere in the tree (a data-modifying CTE hides a DELETE under a SELECT).
WRITES: tuple[type[exp.Expr], ...] = tuple(getattr(exp, n) for n in (
    "Insert", "Update", "Delete", "Merge", "Copy", "Create", "Drop", "Alter", "TruncateTable", "Pragma", "Attach",
    "Detach", "Set", "Transaction", "Commit", "Rollback", "Use", "Grant", "Revoke", "Analyze", "Command",
    "LoadData", "Cache", "Refresh", "Kill", "Execute") if hasattr(exp, n))


@dataclass(frozen=True)
class AllowedTables:
    """The tables a query may name. ``qualified``: (schema, table) pairs; ``bare``: names a query may use
    without a schema (those that resolve to an allowed table). Names are as the database stores them
    (PostgreSQL: case as in the catalog; SQLite: lower case, as SQLite compares them)."""

    qualified: frozenset[tuple[str, str]]
    bare: frozenset[str]
    shown: tuple[str, ...]  # for messages: how the model may write them

    def allows(self, schema: str | None, name: str) -> bool:
        return (schema, name) in self.qualified if schema is not None else name in self.bare


def check_query(query: str, dialect: Dialect, allowed: AllowedTables) -> exp.Expr:
    """The parsed query, or a :class:`ToolRefused` that names the rule it breaks."""
    try:
        statements = [s for s in sqlglot.parse(query, dialect=dialect) if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" (line {first['line']}, column {first['col']})" if "line" in first else ""
        raise ToolRefused(f"the query could not be parsed{where}: {first.get('description') or exc}; "
                          "write one plain SELECT") from None
    except TokenError as exc:
        raise ToolRefused(f"the query could not be parsed: {exc}; write one plain SELECT") from None
    if len(statements) != 1:
        raise ToolRefused(f"exactly one statement per query (found {len(statements)})")
    tree = statements[0]
    root = tree.this if isinstance(tree, exp.Subquery) else tree
    if not isinstance(root, exp.Select | exp.SetOperation):
        raise ToolRefused(f"only SELECT or WITH queries are allowed (this is {_kind(root)})")
    for node in tree.walk():
        if isinstance(node, WRITES):
            raise ToolRefused(f"only SELECT or WITH queries are allowed (it holds {_kind(node)})")
        if isinstance(node, exp.Select) and node.args.get("into") is not None:
            raise ToolRefused("only SELECT or WITH queries are allowed (SELECT ... INTO creates a table)")
        if isinstance(node, exp.Lock):
            raise ToolRefused("only SELECT or WITH queries are allowed (FOR UPDATE/SHARE locks rows)")
        if isinstance(node, exp.Func):
            _check_function(node)
        if isinstance(node, exp.Table):
            _check_table(node, dialect, allowed)
    return tree


def _kind(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return node.key.upper()


def function_name(node: exp.Func) -> str:
    return (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()


def _check_function(node: exp.Func) -> None:
    name = function_name(node)
    if name in HARMLESS:
        return
    if name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES) or DENIED_PATTERN.match(name):
        raise ToolRefused(f"function '{name}' is not allowed")


def _ident(node: exp.Expression | None, dialect: Dialect) -> str | None:
    """An identifier as the database stores it: PostgreSQL folds unquoted names to lower case; SQLite
    compares every name without case."""
    if node is None or not node.name:
        return None
    quoted = isinstance(node, exp.Identifier) and node.quoted
    return node.name if quoted and dialect == "postgres" else node.name.lower()


def _check_table(table: exp.Table, dialect: Dialect, allowed: AllowedTables) -> None:
    if table.this is None or isinstance(table.this, exp.Func):
        return  # a table function (generate_series, json_each): checked as a function
    if not isinstance(table.this, exp.Identifier):
        raise ToolRefused(f"the table reference '{table.sql(dialect)}' cannot be checked; name a table")
    name = _ident(table.this, dialect) or ""
    schema = _ident(table.args.get("db"), dialect)
    if table.args.get("catalog") is not None:
        raise ToolRefused(f"table '{table.sql(dialect)}': three-part names are not allowed")
    if schema is None and name in _ctes_in_scope(table, dialect):
        return
    if dialect == "sqlite" and schema == "main":
        schema = None  # SQLite's own database; any other (temp, an attached one) is refused below
    if not allowed.allows(schema, name):
        shown = f"{schema}.{name}" if schema else name
        raise ToolRefused(f"table '{shown}' is not allowed (allowed: {', '.join(allowed.shown)})")


def _ctes_in_scope(node: exp.Expr, dialect: Dialect) -> set[str]:
    """The WITH names ``node`` can see. Inside a WITH list a name sees the CTEs before it (all of them
    under RECURSIVE); a later sibling's name still means the real table, so it is not counted."""
    seen: set[str] = set()
    child: exp.Expr = node
    parent = node.parent
    while parent is not None:
        if isinstance(parent, exp.With):
            ctes = list(parent.expressions)
            upto = len(ctes) if parent.args.get("recursive") else next(
                (i for i, c in enumerate(ctes) if c is child), len(ctes))
            seen |= _names(ctes[:upto], dialect)
        else:
            for value in parent.args.values():
                if isinstance(value, exp.With) and value is not child:
                    seen |= _names(value.expressions, dialect)
        child, parent = parent, parent.parent
    return seen


def _names(ctes: Iterable[exp.Expression], dialect: Dialect) -> set[str]:
    out = set()
    for cte in ctes:
        alias = cte.args.get("alias")
        name = _ident(alias.this if isinstance(alias, exp.TableAlias) else alias, dialect)
        if name:
            out.add(name)
    return out
