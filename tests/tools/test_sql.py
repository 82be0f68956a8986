"""The ``sql`` tool on a real SQLite file and a real PostgreSQL: answers, refusals, the attack set (each
refused, the database unchanged), and each database-side layer holding on its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from aifab.config import SqlToolSettings, load_settings
from aifab.errors import ConfigError
from aifab.testing.sql_attacks import (
    ALLOWED,
    ATTACKS,
    make_postgres,
    make_sqlite,
    postgres_snapshot,
    run_attacks,
    sqlite_snapshot,
)
from aifab.testing.tools import ToolConformance
from aifab.tools import Toolbox, ToolFailed, ToolRefused
from aifab.tools.connectors.sql import SqlTool, open_sql

PG = pytest.param("postgresql", marks=pytest.mark.integration)


def settings(url: str, **extra) -> SqlToolSettings:
    return SqlToolSettings(kind="sql", url=url, tables=extra.pop("tables", ALLOWED), **extra)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{make_sqlite(tmp_path / 'shop.db')}"


@pytest.fixture
def pg_url(postgres_url) -> str:
    make_postgres(postgres_url)
    return postgres_url


@pytest.fixture(params=["sqlite", PG])
def url(request) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def snapshot(url: str) -> str:
    return sqlite_snapshot(Path(url.removeprefix("sqlite:///"))) if url.startswith("sqlite") else postgres_snapshot(url)


async def open_tool(url: str, **extra) -> SqlTool:
    (tool,) = await open_sql("shop", settings(url, **extra))
    assert isinstance(tool, SqlTool)
    return tool


class TestSqliteTool(ToolConformance):
    good_arguments = {"query": "SELECT id, name, email FROM users ORDER BY id"}
    bad_arguments = {"qurey": "SELECT 1"}

    @pytest.fixture
    async def tool(self, sqlite_url):
        tool = await open_tool(sqlite_url)
        yield tool
        await tool.aclose()


@pytest.mark.integration
class TestPostgresTool(TestSqliteTool):
    @pytest.fixture
    async def tool(self, pg_url):
        tool = await open_tool(pg_url)
        yield tool
        await tool.aclose()


async def test_every_attack_is_refused_and_changes_nothing(url):
    before = snapshot(url)
    box = Toolbox([await open_tool(url, timeout_s=1.0)], limits={"shop": (5.0, 8000)})
    try:
        outcomes = await run_attacks(box, "shop")
    finally:
        await box.aclose()
    assert len(outcomes) >= 20
    assert [o for o in outcomes if not o.refused] == []
    assert snapshot(url) == before


async def test_an_answer_is_a_table_with_its_data(url):
    tool = await open_tool(url, max_rows=2)
    placeholder = "?" if url.startswith("sqlite") else "$1"
    try:
        result = await Toolbox([tool]).call("shop", {
            "query": f"SELECT u.name, count(o.id) AS n FROM users u LEFT JOIN orders o ON o.user_id = u.id "
                     f"WHERE u.id <= {placeholder} GROUP BY u.name ORDER BY u.name", "params": [3]})
        assert result.data == {"columns": ["name", "n"], "rows": [["Ann", 2], ["Bob", 1]]}
        assert result.meta == {"rows": 2, "truncated": True} and result.truncated
        lines = result.text.splitlines()
        assert lines[:3] == ["name | n", "Ann | 2", "Bob | 1"] and "more" in lines[3]
        whole = await tool.call({"query": "SELECT email FROM users WHERE id = 3"})
        assert whole.text == "email\nNULL\n(1 row)" and not whole.truncated
    finally:
        await tool.aclose()


async def test_the_description_shows_the_allowed_schema_only(url):
    tool = await open_tool(url, max_rows=7)
    try:
        text = tool.spec.description
        assert "users(id" in text and "orders(" in text and "email" in text
        assert "secrets" not in text and "at most 7 rows" in text and "SELECT" in text
    finally:
        await tool.aclose()


@pytest.mark.parametrize("query, rule", [
    ("DELETE FROM users", "only SELECT or WITH"),
    ("SELECT * FROM secrets", "table 'secrets' is not allowed (allowed: users, orders)"),
    ("SELECT pg_sleep(1)", "function 'pg_sleep' is not allowed"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
])
async def test_a_refusal_names_the_rule(url, query, rule):
    tool = await open_tool(url)
    try:
        with pytest.raises(ToolRefused, match=rule.replace("(", r"\(").replace(")", r"\)")):
            await tool.call({"query": query})
    finally:
        await tool.aclose()


async def test_a_database_error_is_refused_with_the_databases_message(url):
    tool = await open_tool(url)
    try:
        with pytest.raises(ToolRefused, match="no_such_column"):
            await tool.call({"query": "SELECT no_such_column FROM users"})
        assert (await tool.call({"query": "SELECT count(*) AS n FROM users"})).data["rows"] == [[3]]
    finally:
        await tool.aclose()


async def test_a_query_past_the_time_limit_is_stopped_as_a_504(url):
    tool = await open_tool(url, timeout_s=0.3)
    endless = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    try:
        with pytest.raises(ToolFailed, match="0.3 s") as caught:
            await tool.call({"query": endless})
        assert caught.value.status_code == 504
        assert (await tool.call({"query": "SELECT count(*) FROM users"})).data["rows"] == [[3]]
    finally:
        await tool.aclose()


async def test_the_sqlite_authorizer_alone_refuses_every_attack(sqlite_url):
    """The static check bypassed: the read-only file and the authorizer still refuse them all, but one
    that SQLite reads differently: there a WITH name may be used before it is defined, so the shadowing
    query reads the harmless WITH, not the table."""
    tool = await open_tool(sqlite_url, timeout_s=0.5)
    before = snapshot(sqlite_url)
    ran = {}
    try:
        for name, query, params in ATTACKS:
            try:
                ran[name] = await tool.db.run(query, params, 10)
            except (ToolRefused, ToolFailed):
                pass
    finally:
        await tool.aclose()
    assert list(ran) == ["CTE name shadowing after use"] and "vault" not in repr(ran)
    assert snapshot(sqlite_url) == before


async def test_the_authorizer_allows_with_queries_but_not_their_tables(sqlite_url):
    tool = await open_tool(sqlite_url)
    try:
        rows = await tool.db.run("WITH a AS (SELECT id FROM users) SELECT count(*) FROM a", [], 10)
        assert rows == (["count(*)"], [(3,)])
        with pytest.raises(ToolRefused, match="table 'secrets'"):  # a WITH named like an allowed table
            await tool.db.run("WITH users AS (SELECT * FROM secrets) SELECT * FROM users", [], 10)
        with pytest.raises(ToolRefused, match="function 'randomblob'"):
            await tool.db.run("SELECT randomblob(10)", [], 10)
    finally:
        await tool.aclose()


@pytest.mark.integration
async def test_the_postgres_transaction_alone_changes_nothing(pg_url):
    """The static check bypassed: the read-only transaction and the cursor still keep every write out.
    (Two attacks are left out: without the check they would lock or end sessions, not write.)"""
    tool = await open_tool(pg_url, timeout_s=1.0)
    before = snapshot(pg_url)
    try:
        for name, query, params in ATTACKS:
            if name in ("advisory lock", "terminate backends"):
                continue
            try:
                await tool.db.run(query, params, 10)
            except (ToolRefused, ToolFailed):
                pass
        with pytest.raises(ToolRefused, match="read-only transaction"):
            await tool.db.run("SELECT nextval('order_numbers')", [], 10)
    finally:
        await tool.aclose()
    assert snapshot(pg_url) == before


@pytest.mark.integration
async def test_postgres_that_goes_away_fails_and_the_next_call_reconnects(pg_url):
    import psycopg

    tool = await open_tool(pg_url)
    try:
        with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'aifab-sql-tool'")
        with pytest.raises(ToolFailed):
            await tool.call({"query": "SELECT 1"})
        assert (await tool.call({"query": "SELECT count(*) FROM users"})).data["rows"] == [[3]]
        tool.db.conninfo = "postgresql://aifab@127.0.0.1:1/nowhere"  # type: ignore[attr-defined]
        await tool.db._drop()  # type: ignore[attr-defined]
        with pytest.raises(ToolFailed, match="cannot be reached"):
            await tool.call({"query": "SELECT 1"})
    finally:
        await tool.aclose()


@pytest.mark.integration
async def test_postgres_schema_qualified_names_and_the_pinned_search_path(pg_url):
    import psycopg

    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute("CREATE SCHEMA shop; CREATE TABLE shop.items (sku text); INSERT INTO shop.items VALUES ('a1');"
                      "CREATE TABLE shop.users (x int)")
    tool = await open_tool(pg_url, tables=["users", "shop.items"])
    try:
        assert (await tool.call({"query": "SELECT sku FROM items"})).data["rows"] == [["a1"]]
        assert (await tool.call({"query": "SELECT count(*) FROM shop.items"})).data["rows"] == [[1]]
        assert (await tool.call({"query": "SELECT count(*) FROM public.users"})).data["rows"] == [[3]]
        with pytest.raises(ToolRefused, match="table 'shop.users' is not allowed"):
            await tool.call({"query": "SELECT * FROM shop.users"})
    finally:
        await tool.aclose()


def test_a_missing_sqlite_file_is_a_config_error_and_is_not_created(tmp_path):
    import asyncio

    missing = tmp_path / "nope.db"
    s = load_settings(data_dir=tmp_path, tools={"db": {"kind": "sql", "url": f"sqlite:///{missing}",
                                                       "tables": ["t"]}})
    with pytest.raises(ConfigError, match="no SQLite database"):
        asyncio.run(Toolbox.open(s))
    assert not missing.exists()


async def test_an_allowed_table_that_does_not_exist_is_a_config_error(url):
    with pytest.raises(ConfigError, match="'nope' is not in the"):
        await open_tool(url, tables=["users", "nope"])
