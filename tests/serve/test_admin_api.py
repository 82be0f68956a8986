"""The admin API behind the gateway: who may call it (admin keys, the data directory's token, anyone on a
loopback server with no keys), and what it does with keys, the registry, rollouts, datasets and usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from aifab.admin.state import usage_series
from aifab.config import load_settings
from aifab.corpus.service import Corpus
from aifab.gateway.front import Gateway
from aifab.gateway.keys import KeyStore
from aifab.registry import ModelPackage, Registry
from aifab.serve import ModelPool, create_app
from aifab.state import Database
from aifab.state.tables import AuditRow
from aifab.testing import FakeEmbedder, FakeEngine, FakeRuntime, MemoryStore

TOKEN = "local-token-secret"


@pytest.fixture
def factory(tmp_path):
    """A gateway over the serving app with a corpus, a registry holding ``echo`` and a fine-tune of it, and
    ``open(host=...)`` for a client of a server bound to ``host``."""
    db = Database(f"sqlite:///{tmp_path / 'aifab.db'}")
    db.upgrade()
    registry = Registry(db, tmp_path / "models")
    for name, lineage in (("echo", {}), ("echo-ft", {"base": "echo"}), ("echo-bad", {"base": "echo", "gate": {
            "passed": False, "reason": "loss rose"}})):
        registry.add(ModelPackage(name=name, kind="chat", format="gguf", path=f"/m/{name}.gguf", sha256="a" * 64,
                                  lineage=lineage))
    engine = FakeEngine("echo", FakeRuntime(None))
    clients: list[httpx.AsyncClient] = []
    keys = KeyStore(db)

    def open_(host: str = "127.0.0.1", **gateway: object) -> httpx.AsyncClient:
        settings = load_settings(data_dir=tmp_path / "data", serve={"host": host}, gateway=gateway)
        corpus = Corpus(settings, registry, MemoryStore(), embedder=FakeEmbedder())
        app = Gateway(create_app(ModelPool({"echo": engine}), corpus=corpus), settings, keys=keys, db=db,
                      local_token=TOKEN)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        clients.append(client)
        return client

    yield open_, keys, db
    engine.close()
    keys.close()
    db.close()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_who_may_call_the_admin_api(factory):
    open_, keys, _ = factory
    http = open_()
    assert (await http.get("/v1/me")).json()["keyless"] is True  # loopback, no keys: open, as admin
    assert (await http.get("/v1/admin/keys")).status_code == 200
    wide = open_(host="0.0.0.0", allow_open=True)  # keyless beyond loopback: models yes, admin no
    r = await wide.get("/v1/admin/keys")
    assert r.status_code == 403 and "admin key" in r.json()["error"]["message"]
    assert (await wide.get("/v1/admin/keys", headers=bearer(TOKEN))).status_code == 200  # the token file's holder

    admin = keys.create("ops", admin=True)[1]
    plain = keys.create("app")[1]
    assert (await http.get("/v1/admin/keys")).status_code == 401  # keys exist: every request needs one
    r = await http.get("/v1/admin/models", headers=bearer(plain))
    assert r.status_code == 403 and r.json()["error"]["message"] == "the admin API needs an admin key"
    assert (await http.get("/v1/admin/models", headers=bearer(admin))).status_code == 200
    me = (await http.get("/v1/me", headers=bearer(plain))).json()
    assert (me["name"], me["admin"], me["keyless"]) == ("app", False, False)
    assert (await http.get("/v1/me", headers=bearer(TOKEN))).json()["name"] == "local"


async def test_revoking_the_last_key_does_not_open_a_server_beyond_loopback(factory):
    open_, keys, _ = factory
    secret = keys.create("only", admin=True)[1]
    wide = open_(host="0.0.0.0")
    assert (await wide.get("/v1/models", headers=bearer(secret))).status_code == 200
    keys.revoke("only")
    for headers in (bearer(secret), {}):
        r = await wide.get("/v1/models", headers=headers)
        assert r.status_code == 401 and "no active API key" in r.json()["error"]["message"]
    assert (await open_().get("/v1/models")).status_code == 200  # on loopback, no keys means open, as before


async def test_keys_are_created_once_with_their_secret_listed_without_it_and_revoked(factory):
    open_, keys, _ = factory
    http = open_()
    r = await http.post("/v1/admin/keys", json={"name": "ci", "models": ["echo"], "rpm": 60})
    assert r.status_code == 201
    made = r.json()
    assert made["first"] is True and made["key"].startswith("afk-") and made["models"] == ["echo"]
    listed = (await http.get("/v1/admin/keys", headers=bearer(made["key"]))).json()
    assert listed["error"]["code"] == "forbidden"  # not an admin key
    listed = (await http.get("/v1/admin/keys", headers=bearer(TOKEN))).json()["data"]
    assert [k["name"] for k in listed] == ["ci"] and "key" not in listed[0] and "secret_hash" not in listed[0]
    for body, message in (({"name": "x", "models": ["nope"]}, "neither a registered model"),
                          ({"name": "x", "colour": "red"}, "colour"), ({"name": "ci"}, "exists")):
        r = await http.post("/v1/admin/keys", json=body, headers=bearer(TOKEN))
        assert r.status_code in (400, 409) and message in r.json()["error"]["message"], r.json()
    r = await http.delete("/v1/admin/keys/ci", headers=bearer(TOKEN))
    assert r.json()["revoked_at"] is not None
    listed = (await http.get("/v1/admin/keys", params={"all": "true"}, headers=bearer(TOKEN))).json()["data"]
    assert [k["revoked_at"] is not None for k in listed] == [True]
    assert (await http.get("/v1/admin/keys", headers=bearer(TOKEN))).json()["data"] == []
    r = await http.delete("/v1/admin/keys/nobody", headers=bearer(TOKEN))
    assert r.status_code == 404 and r.json()["error"]["type"]


async def test_rollouts_promote_and_roll_back_through_the_api(factory):
    open_, _, db = factory
    http = open_()
    r = await http.post("/v1/admin/rollouts", json={"name": "echo-ft", "canary": 25})
    assert r.json() == {"model": "echo", "current": "echo", "candidate": "echo-ft", "percent": 25, "previous": None}
    r = await http.post("/v1/admin/rollouts", json={"name": "echo-bad", "full": True})
    assert r.status_code == 400 and "did not pass its evaluation gate (loss rose)" in r.json()["error"]["message"]
    r = await http.post("/v1/admin/rollouts", json={"name": "echo-ft"})
    assert r.status_code == 400 and "--canary PERCENT or --full" in r.json()["error"]["message"]
    now = datetime.now(UTC)
    with db.session() as s:  # two answers by each version in the last minutes, one long before
        for i, (route, ago) in enumerate((("echo", 1), ("echo", 2), ("echo-ft", 1), ("echo-ft", 60))):
            s.add(AuditRow(id=f"r{i}", ts=now - timedelta(minutes=ago), endpoint="chat.completions", model="echo",
                           route=route, status=200, latency_ms=1.0, verdicts=[]))
    rollouts = (await http.get("/v1/admin/rollouts")).json()["data"]
    assert rollouts[0]["traffic"] == {"echo": 2, "echo-ft": 1}
    r = await http.post("/v1/admin/rollouts/echo/rollback")
    assert (r.json()["candidate"], r.json()["current"]) == (None, "echo")
    assert (await http.post("/v1/admin/rollouts/nope/rollback")).status_code == 404


async def test_the_registry_datasets_and_collections_read_as_the_cli_prints_them(factory):
    open_, _, _ = factory
    http = open_()
    models = {m["name"]: m for m in (await http.get("/v1/admin/models")).json()["data"]}
    assert models["echo"]["loaded"] is True and models["echo-ft"]["loaded"] is False
    lineage = (await http.get("/v1/admin/models/echo-ft/lineage")).json()
    assert (lineage["model"], lineage["base"]) == ("echo-ft", "echo")
    assert (await http.get("/v1/admin/models/nope")).status_code == 404
    assert (await http.get("/v1/admin/datasets")).json()["data"] == []
    assert (await http.get("/v1/admin/datasets/nope")).status_code == 404
    assert (await http.get("/v1/admin/collections/nope")).status_code == 404


async def test_only_the_token_file_may_ingest_the_servers_own_files(factory, tmp_path):
    open_, keys, _ = factory
    http = open_()
    admin = keys.create("ops", admin=True)[1]
    body = {"collection": "kb", "paths": ["/etc"]}
    r = await http.post("/v1/admin/ingest", json=body, headers=bearer(admin))
    assert r.status_code == 403 and "token file" in r.json()["error"]["message"]
    r = await http.post("/v1/admin/ingest", json={"collection": "kb", "paths": ["docs"]}, headers=bearer(TOKEN))
    assert r.status_code == 400 and "absolute" in r.json()["error"]["message"]


async def test_only_the_token_file_may_make_a_backup(factory, tmp_path):
    """A backup writes the server's files: an admin key is not enough."""
    open_, keys, _ = factory
    http = open_()
    admin = keys.create("ops", admin=True)[1]
    r = await http.post("/v1/admin/backup", json={"path": str(tmp_path / "b.tar.gz")}, headers=bearer(admin))
    assert r.status_code == 403 and "token file" in r.json()["error"]["message"]
    assert not (tmp_path / "b.tar.gz").exists()
    r = await http.post("/v1/admin/backup", json={"path": str(tmp_path / "b.tar.gz")}, headers=bearer(TOKEN))
    # past the token check: this app's data directory has no state database of its own to copy
    assert r.status_code == 404 and "no state database" in r.json()["error"]["message"]


def test_usage_over_time_is_bucketed_per_key(state_db):
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    with state_db.session() as s:
        for i, (key, minutes, tokens) in enumerate((("a", 30, 10), ("a", 90, 5), ("b", 30, 7), (None, 200, 1))):
            s.add(AuditRow(id=f"r{i}", ts=now - timedelta(minutes=minutes), key_name=key, endpoint="chat.completions",
                           model="m", status=200, latency_ms=1.0, verdicts=[], prompt_tokens=tokens))
    series = usage_series(state_db, since=now - timedelta(hours=2), bucket_s=3600, now=now)
    assert series["data"] == [
        {"key": "a", "t": "2026-12-01T10:00:00+00:00", "requests": 1, "tokens": 5},
        {"key": "a", "t": "2026-12-01T11:00:00+00:00", "requests": 1, "tokens": 10},
        {"key": "b", "t": "2026-12-01T11:00:00+00:00", "requests": 1, "tokens": 7},
    ]
    with pytest.raises(Exception, match="too fine"):
        usage_series(state_db, since=now - timedelta(days=30), bucket_s=60, now=now)
