"""``aifab keys`` and ``aifab usage`` as an operator runs them (real subprocesses), and the usage report
they print: the secret is shown once and stored nowhere in clear, a revocation reaches a running
gateway's next request, and usage adds up the audit log per key and model."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aifab.gateway.keys import KeyStore
from aifab.gateway.usage import parse_since, usage_report
from aifab.state import Database
from aifab.state.tables import AuditRow, KeyUsageRow
from aifab.testing.cli import run_aifab as aifab


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "d"


@pytest.fixture
def db(data_dir):
    data_dir.mkdir()
    database = Database(f"sqlite:///{data_dir.resolve() / 'aifab.db'}")
    database.upgrade()
    yield database
    database.close()


CHAT, EMBED = "smollm2-135m-instruct", "all-minilm-l6-v2"  # registered by default


def test_create_shows_the_secret_once_and_never_stores_it(data_dir, db, tmp_path):
    config = tmp_path / "aifab.toml"
    config.write_text('[apps.docs]\ncollection = "kb"\n\n[gateway.routes.remote]\naliases = ["far"]\n')
    r = aifab("keys", "create", "--name", "team-a", "--models", f"{CHAT},{EMBED}", "--models", "docs,far", "--rpm", "5",
              "--budget-tokens", "1000", "-c", str(config), "--data-dir", str(data_dir))
    assert r.returncode == 0, r.stderr
    secret = r.stdout.splitlines()[-1]
    assert secret.startswith("afk-") and "will not be shown again" in r.stderr
    # how to use it, and that keyless calls end now
    assert f"'Authorization: Bearer {secret}'" in r.stderr and f"OPENAI_API_KEY={secret}" in r.stderr
    assert "first API key: from now on every request needs one, local ones included" in r.stderr
    r = aifab("keys", "create", "--name", "team-b", "--data-dir", str(data_dir))
    assert r.returncode == 0 and "first API key" not in r.stderr
    for f in data_dir.rglob("*"):  # the database, its WAL and anything else under the data directory
        assert secret.encode() not in f.read_bytes(), f
    listed = aifab("keys", "list", "--json", "--data-dir", str(data_dir))
    assert secret not in listed.stdout and secret[10:] not in aifab("keys", "list", "--data-dir", str(data_dir)).stdout
    key = next(k for k in json.loads(listed.stdout) if k["name"] == "team-a")
    assert key["models"] == [CHAT, EMBED, "docs", "far"] and key["rpm"] == 5
    assert KeyStore(db).authenticate(secret).name == "team-a"


def test_a_revocation_reaches_a_running_gateway_at_once(data_dir, db):
    r = aifab("keys", "create", "--name", "ci", "--admin", "--json", "--data-dir", str(data_dir))
    created = json.loads(r.stdout)
    assert created["admin"] is True and created["key"].startswith("afk-")
    gateway = KeyStore(db)
    assert gateway.authenticate(created["key"]).id == created["id"]
    r = aifab("keys", "revoke", "ci", "--data-dir", str(data_dir))
    assert r.returncode == 0 and "revoked ci" in r.stdout
    assert gateway.authenticate(created["key"]) is None
    assert aifab("keys", "list", "--json", "--data-dir", str(data_dir)).stdout.strip() == "[]"
    table = aifab("keys", "list", "--all", "--data-dir", str(data_dir)).stdout
    assert "ci" in table and "admin" in table and created["id"] in table


def test_a_scope_naming_an_unknown_model_is_refused(data_dir):
    r = aifab("keys", "create", "--name", "app", "--models", f"{CHAT},chat", "--data-dir", str(data_dir))
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "--models names 'chat', which is neither a registered model, an app nor a route" in r.stderr
    assert f"known: {EMBED}, {CHAT}" in r.stderr
    assert aifab("keys", "list", "--json", "--data-dir", str(data_dir)).stdout.strip() == "[]"


def test_revoking_a_revoked_key_is_an_error(data_dir):
    assert aifab("keys", "create", "--name", "old", "--data-dir", str(data_dir)).returncode == 0
    assert aifab("keys", "revoke", "old", "--data-dir", str(data_dir)).returncode == 0
    r = aifab("keys", "revoke", "old", "--data-dir", str(data_dir))
    assert r.returncode == 1 and r.stderr.startswith("aifab: error: the key 'old' was already revoked on ")
    assert r.stderr.count("\n") == 1


def test_errors_are_one_line(data_dir):
    for args in (("keys", "revoke", "nobody"), ("keys", "create", "--name", "bad name"),
                 ("usage", "--since", "yesterday")):
        r = aifab(*args, "--data-dir", str(data_dir))
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


def audit(db: Database, key, model: str, status: int, *, tokens=(10, 20), latency=100.0, ago=timedelta()):
    with db.session() as s:
        n = s.query(AuditRow).count()
        s.add(AuditRow(id=f"r{n}", ts=datetime.now(UTC) - ago, key_id=key.id if key else None,
                       key_name=key.name if key else None, endpoint="/v1/chat/completions", model=model,
                       status=status, prompt_tokens=tokens[0], completion_tokens=tokens[1], latency_ms=latency,
                       ttft_ms=latency / 2, verdicts=[]))


def test_usage_adds_up_the_audit_log_per_key_and_model(db):
    keys = KeyStore(db)
    a, _ = keys.create("a", budget_tokens=1000)
    b, _ = keys.create("b")
    for latency in range(1, 21):  # 20 successes of a on m1, latencies 1..20 ms
        audit(db, a, "m1", 200, latency=float(latency))
    audit(db, a, "m2", 429, tokens=(0, 0))
    audit(db, a, "m2", 502, tokens=(5, 0))
    audit(db, a, "m1", 200, ago=timedelta(days=3))
    audit(db, None, "m1", 200)
    with db.session() as s:  # what the limiter counted against the budget (lifetime)
        s.add(KeyUsageRow(key_id=a.id, requests=3, prompt_tokens=100, completion_tokens=50))
    report = usage_report(db, since=parse_since("24h"))
    assert report["object"] == "usage" and report["since"]
    entries = {e["key"]: e for e in report["keys"]}
    assert set(entries) == {"a", "b", None}
    ea = entries["a"]
    assert (ea["requests"], ea["prompt_tokens"], ea["completion_tokens"]) == (22, 205, 400)
    assert ea["errors"] == {"4xx": 1, "5xx": 1}
    assert ea["models"]["m2"] == {"requests": 2, "prompt_tokens": 5, "completion_tokens": 0, "errors": 2}
    assert ea["latency_ms"]["p95"] == 100.0 and ea["ttft_ms"]["p50"] == 5.5
    assert (ea["budget_tokens"], ea["budget_spent"], ea["budget_left"]) == (1000, 150, 850)
    assert entries["b"]["requests"] == 0 and entries["b"]["latency_ms"] is None
    assert usage_report(db, key=a)["keys"][0]["requests"] == 23  # all time
    keys.revoke("b")
    assert [e["key"] for e in usage_report(db, key=None)["keys"]] == ["a", None]


def test_usage_cli_prints_the_report(data_dir, db):
    a, _ = KeyStore(db).create("a")
    audit(db, a, "m1", 200)
    r = aifab("usage", "--key", "a", "--since", "2020-01-01", "--json", "--data-dir", str(data_dir))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["since"].startswith("2020-01-01") and [e["key"] for e in report["keys"]] == ["a"]
    assert report["keys"][0]["models"]["m1"]["completion_tokens"] == 20
    r = aifab("usage", "--data-dir", str(data_dir))
    assert r.returncode == 0, r.stderr
    table = r.stdout
    assert "m1" in table and "a" in table


def test_a_tool_scope_is_created_listed_and_checked(data_dir, tmp_path):
    config = tmp_path / "aifab.toml"
    config.write_text('[tools.db]\nkind = "sql"\nurl = "sqlite:///x.db"\ntables = ["t"]\n')
    where = ["-c", str(config), "--data-dir", str(data_dir)]
    r = aifab("keys", "create", "--name", "agent", "--tools", "db,search", "--json", *where)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["tools"] == ["db", "search"]
    assert aifab("keys", "create", "--name", "no-tools", "--tools", "", *where).returncode == 0
    table = aifab("keys", "list", *where).stdout
    assert "tools=db,search" in table and "tools=none" in table
    r = aifab("keys", "create", "--name", "typo", "--tools", "db,dbb", *where)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "--tools names 'dbb', which is neither a [tools.*] entry nor a built-in tool (known: ask, db, search)" \
        in r.stderr
