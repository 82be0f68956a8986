"""``aifab tools`` as a user runs it, on a SQLite file named in an aifab.toml."""

from __future__ import annotations

import json

import pytest

from aifab.testing.cli import run_aifab as aifab
from aifab.testing.sql_attacks import make_sqlite, sqlite_snapshot


@pytest.fixture
def project(tmp_path):
    make_sqlite(tmp_path / "shop.db")
    (tmp_path / "aifab.toml").write_text(
        '[tools.shop]\nkind = "sql"\nurl = "sqlite:///shop.db"\ntables = ["users", "orders"]\nmax_rows = 2\n')
    return tmp_path


def test_list_and_show_tell_what_a_model_is_told(project):
    r = aifab("tools", "list", "--json", cwd=project)
    assert r.returncode == 0, r.stderr
    (tool,) = json.loads(r.stdout)
    assert tool["name"] == "shop" and tool["kind"] == "sql" and "users(id" in tool["description"]
    r = aifab("tools", "list", cwd=project)
    assert r.returncode == 0 and "shop" in r.stdout and "SQLite" in r.stdout
    r = aifab("tools", "show", "shop", cwd=project)
    assert r.returncode == 0 and "orders(id" in r.stdout and '"query"' in r.stdout
    assert json.loads(aifab("tools", "show", "shop", "--json", cwd=project).stdout)["parameters"]["required"] == ["query"]
    assert not (project / ".aifab").exists()


def test_call_prints_the_table_or_its_json(project):
    r = aifab("tools", "call", "shop", "--args", '{"query": "SELECT name FROM users ORDER BY id"}', cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:3] == ["name", "Ann", "Bob"] and "more" in r.stdout
    r = aifab("tools", "call", "shop", "--json", "--args",
              '{"query": "SELECT count(*) AS n FROM orders WHERE user_id = ?", "params": [1]}', cwd=project)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["data"] == {"columns": ["n"], "rows": [[2]]} and out["meta"] == {"rows": 1, "truncated": False}


@pytest.mark.parametrize("args, code, message", [
    ('{"query": "DELETE FROM users"}', 1, "aifab: error: only SELECT or WITH queries are allowed (this is DELETE)"),
    ('{"query": "SELECT * FROM secrets"}', 1, "aifab: error: table 'secrets' is not allowed (allowed: users, orders)"),
    ('{"qurey": "SELECT 1"}', 1, "aifab: error: tool 'shop': arguments: 'query' is a required property"),
    ('{"query": ', 2, "aifab: error: --args is not valid JSON: Expecting value"),
])
def test_a_refused_call_or_bad_json_is_one_line(project, args, code, message):
    before = sqlite_snapshot(project / "shop.db")
    r = aifab("tools", "call", "shop", "--args", args, cwd=project)
    assert r.returncode == code and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(message), r.stderr
    assert sqlite_snapshot(project / "shop.db") == before


def test_an_unknown_tool_or_a_missing_database_is_one_line(project):
    r = aifab("tools", "call", "nope", cwd=project)
    assert r.returncode == 1 and r.stderr == "aifab: error: no tool named 'nope' (tools: shop)\n"
    (project / "shop.db").unlink()
    r = aifab("tools", "list", cwd=project)
    assert r.returncode == 1 and "no SQLite database" in r.stderr and r.stderr.count("\n") == 1
    assert not (project / "shop.db").exists()


def test_up_with_a_tool_that_cannot_start_says_so_in_one_line(tmp_path):
    (tmp_path / "aifab.toml").write_text('[tools.db]\nkind = "sql"\nurl = "sqlite:///missing.db"\ntables = ["t"]\n')
    r = aifab("up", "--port", "0", "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("aifab: error: no SQLite database at missing.db")
    assert "Traceback" not in r.stderr and not (tmp_path / "missing.db").exists()
