"""``aifab apply``'s plan and its execution, over both targets it has: the state store itself and a running
server's admin API (the same scenario runs on each, so both behave alike)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from aifab.admin.apply import execute, plan
from aifab.admin.local import LocalTarget
from aifab.cli.apply import RemoteTarget
from aifab.cli.remote import Server
from aifab.config import load_settings
from aifab.corpus.service import Corpus
from aifab.errors import ConfigError
from aifab.gateway.front import Gateway
from aifab.gateway.keys import KeyStore, hash_secret
from aifab.registry import ModelPackage, Registry
from aifab.serve import ModelPool, create_app
from aifab.state import Database
from aifab.testing import FakeEmbedder, FakeEngine, FakeRuntime, MemoryStore

SECRET = "s" * 40
TOKEN = "local-token-for-tests"


def _settings(tmp_path: Path, **declared):
    return load_settings(data_dir=tmp_path / "data", corpus={"chunk_tokens": 64, "chunk_overlap": 8}, **declared)


@pytest.fixture(params=["local", "server"])
def world(request, tmp_path):
    """(target, corpus, keys) over one state: the store directly, or a server's admin API in front of it."""
    db = Database(f"sqlite:///{tmp_path / 'aifab.db'}")
    db.upgrade()
    registry = Registry(db, tmp_path / "models")
    registry.add(ModelPackage(name="echo", kind="chat", format="gguf", path="/m/echo.gguf", sha256="a" * 64))
    corpus = Corpus(_settings(tmp_path), registry, MemoryStore(), embedder=FakeEmbedder())
    keys = KeyStore(db)
    engine = FakeEngine("echo", FakeRuntime(None))
    if request.param == "local":
        yield LocalTarget(corpus, keys), corpus, keys
    else:
        inner = create_app(ModelPool({"echo": engine}), corpus=corpus)
        inner.state.load_settings = lambda: corpus.settings  # the server's config file, unchanged
        app = Gateway(inner, corpus.settings, keys=keys, db=db, local_token=TOKEN)
        with TestClient(app, base_url="http://test", headers={"authorization": f"Bearer {TOKEN}"}) as http:
            server = Server("http://test", TOKEN)
            server.http = http
            yield RemoteTarget(server), corpus, keys
    engine.close()
    keys.close()
    db.close()


def _docs(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Rivers\n\nThe Danube flows through Vienna and Budapest.\n")
    (docs / "b.md").write_text("# Lakes\n\nLake Geneva lies between France and Switzerland.\n")
    return docs


def _apply(settings, base, target, **kw):
    todo = plan(settings, base, target, **kw)
    lines: list[str] = []
    execute(todo, target, lines.append)
    return todo, lines


def test_apply_creates_then_finds_nothing_to_do_then_follows_the_file(world, tmp_path, monkeypatch):
    target, corpus, keys = world
    _docs(tmp_path)
    monkeypatch.setenv("CI_KEY", SECRET)
    declared = {"collections": {"kb": {"sources": ["docs"]}},
                "keys": {"ci": {"models": ["echo"], "rpm": 60, "secret_env": "CI_KEY"}, "ops": {"admin": True}}}
    settings = _settings(tmp_path, **declared)
    todo, lines = _apply(settings, tmp_path, target)
    assert [(c.sign, c.kind, c.name) for c in todo.changes] == [("+", "collection", "kb"), ("+", "key", "ci"),
                                                                ("+", "key", "ops")]
    assert corpus.collections.get("kb").to_dict()["documents"] == 2
    ci = keys.get("ci")
    assert (ci.models, ci.rpm, keys.authenticate(SECRET)) == (("echo",), 60, ci)
    assert any("secret: afk-" in line for line in lines)  # ops: made here, shown once

    again = plan(settings, tmp_path, target)
    assert again.changes == [] and again.render()[-1] == "No changes: the state matches the file."

    (tmp_path / "docs" / "b.md").unlink()
    (tmp_path / "docs" / "a.md").write_text("# Rivers\n\nThe Danube ends in the Black Sea.\n")
    (tmp_path / "docs" / "c.md").write_text("# Seas\n\nThe Baltic is brackish.\n")
    declared["keys"]["ci"]["rpm"] = 120
    declared["collections"]["kb"]["chunk_tokens"] = 32
    settings = _settings(tmp_path, **declared)
    todo, _ = _apply(settings, tmp_path, target)
    rendered = "\n".join(todo.render())
    for line in ("~ collection kb", "chunking 64/8 -> 32/8 tokens", f"~ {tmp_path / 'docs' / 'a.md'}",
                 f"+ {tmp_path / 'docs' / 'c.md'}", f"- {tmp_path / 'docs' / 'b.md'}", "rpm: 60 -> 120",
                 "Plan: 0 to add, 2 to change, 0 to remove."):
        assert line in rendered, rendered
    info = corpus.collections.get("kb")
    assert (info.live_version, info.to_dict()["documents"]) == (2, 2)  # the new pipeline's version, made live
    assert keys.get("ci").rpm == 120
    assert plan(settings, tmp_path, target).changes == []


def test_what_the_file_no_longer_declares_goes_only_with_prune(world, tmp_path, monkeypatch):
    target, corpus, keys = world
    _docs(tmp_path)
    keys.create("old", secret="o" * 40)
    corpus.ingest_paths("legacy", [tmp_path / "docs"])
    settings = _settings(tmp_path, keys={"ci": {"secret_file": "ci.secret"}})
    (tmp_path / "ci.secret").write_text(SECRET + "\n")
    todo = plan(settings, tmp_path, target)
    assert todo.render()[-2] == "  not in the file, kept (--prune removes them): collection legacy, key old"
    todo, _ = _apply(settings, tmp_path, target, prune=True)
    assert {(c.sign, c.name) for c in todo.changes} == {("+", "ci"), ("-", "legacy"), ("-", "old")}
    assert [c.name for c in corpus.collections.list()] == [] and keys.authenticate("o" * 40) is None
    (tmp_path / "ci.secret").write_text("t" * 40)  # a new secret in the file: the key's secret rotates
    todo, _ = _apply(settings, tmp_path, target)
    assert todo.changes[0].lines == ["secret: rotated"] and keys.authenticate("t" * 40) is not None
    assert keys.authenticate(SECRET) is None and keys.get("ci").prefix == "t" * 10


def test_bad_declarations_are_one_clear_error_before_anything_changes(world, tmp_path):
    target, corpus, keys = world
    for declared, message in (
        ({"collections": {"kb": {"sources": ["nowhere"]}}}, "collections.kb.sources: no such file or folder"),
        ({"keys": {"ci": {"secret_env": "AIFAB_TEST_UNSET_VARIABLE"}}}, "AIFAB_TEST_UNSET_VARIABLE is not set"),
        ({"keys": {"ci": {"secret_file": "missing.txt"}}}, "keys.ci.secret_file: cannot read"),
    ):
        with pytest.raises(ConfigError, match=message):
            plan(_settings(tmp_path, **declared), tmp_path, target)
    assert corpus.collections.list() == [] and keys.list() == []
    (tmp_path / "short").write_text("too-short")
    todo = plan(_settings(tmp_path, keys={"ci": {"secret_file": "short"}}), tmp_path, target)
    with pytest.raises(Exception, match="at least 32 printable characters"):
        execute(todo, target, print)
    assert keys.list() == [] and hash_secret("too-short") not in str(keys.list())


def test_the_cli_prints_the_plan_and_a_dry_run_changes_nothing(tmp_path):
    from aifab.testing.cli import run_aifab

    r = run_aifab("apply", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert (r.returncode, r.stderr) == (1, f"aifab: error: config file not found: {tmp_path / 'nope.toml'}\n")
    (tmp_path / "aifab.toml").write_text('[keys.ci]\nmodels = ["smollm2-135m-instruct"]\n')
    r = run_aifab("apply", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["+ key ci", "    models = ['smollm2-135m-instruct']",
                                     "    a new secret, printed once", "Plan: 1 to add, 0 to change, 0 to remove."]
    r = run_aifab("keys", "list", "--json", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "[]\n")
    r = run_aifab("apply", cwd=tmp_path)
    assert r.returncode == 0 and "+ key ci: done (secret: afk-" in r.stdout and r.stdout.endswith("Apply complete.\n")
    assert run_aifab("apply", cwd=tmp_path).stdout == "No changes: the state matches the file.\n"


def test_a_running_server_takes_the_files_apps_and_routes_without_a_restart(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'aifab.db'}")
    db.upgrade()
    registry = Registry(db, tmp_path / "models")
    registry.add(ModelPackage(name="echo", kind="chat", format="gguf", path="/m/echo.gguf", sha256="a" * 64))
    corpus = Corpus(_settings(tmp_path), registry, MemoryStore(), embedder=FakeEmbedder())
    corpus.collections.create("kb")
    engine = FakeEngine("echo", FakeRuntime(None))
    inner = create_app(ModelPool({"echo": engine}), corpus=corpus)
    on_disk = {"settings": corpus.settings}
    inner.state.load_settings = lambda: on_disk["settings"]
    app = Gateway(inner, corpus.settings, db=db, local_token=TOKEN)
    with TestClient(app, base_url="http://test", headers={"authorization": f"Bearer {TOKEN}"}) as http:
        server = Server("http://test", TOKEN)
        server.http = http
        target = RemoteTarget(server)
        on_disk["settings"] = _settings(tmp_path, apps={"helpdesk": {"collection": "kb"}},
                                        gateway={"routes": {"assistant": {"aliases": ["bot"]}}},
                                        engines={"max_batch": 4})
        todo = plan(on_disk["settings"], tmp_path, target)
        assert todo.render() == ["~ server config", "    + app helpdesk", "    + route assistant",
                                 "  not in the file, kept (--prune removes them): collection kb",
                                 "  changed, and read only when `aifab up` starts (restart it): engines",
                                 "Plan: 0 to add, 1 to change, 0 to remove."]
        assert "helpdesk" not in {m["id"] for m in http.get("/v1/models").json()["data"]}  # a dry run changed nothing
        execute(todo, target, print)
        served = {m["id"] for m in http.get("/v1/models").json()["data"]}
        assert "helpdesk" in served
        assert app.router.resolve("bot").name == "assistant"
        assert plan(on_disk["settings"], tmp_path, target).changes == []
        on_disk["settings"] = _settings(tmp_path, apps={"x": {"collection": "kb", "tools": ["db"]}},
                                        tools={"db": {"kind": "sql", "url": "sqlite:///x.db", "tables": ["t"]}})
        r = http.post("/v1/admin/reload")
        assert r.status_code == 409 and "tools this server has not opened (db): restart it" in r.json()["error"]["message"]
    engine.close()
    db.close()
