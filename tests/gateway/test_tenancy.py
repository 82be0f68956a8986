"""Tenants through the gateway: a key sees only the collections and ACL-tagged chunks of its scope, in
``/v1/retrieve`` and in RAG apps alike, and changes only the collections it names."""

from __future__ import annotations

import httpx
import pytest

from aifab.config import load_settings
from aifab.corpus.service import Corpus
from aifab.gateway.front import Gateway
from aifab.gateway.keys import KeyStore
from aifab.registry import Registry
from aifab.serve import ModelPool, create_app
from aifab.state import Database
from aifab.testing import FakeEmbedder, FakeEngine, FakeRuntime, MemoryStore

TEAM_A = "The Danube flows through Vienna and Budapest into the Black Sea."
TEAM_B = "The Danube delta is where the secret merger with Rhine Holdings will be signed."


@pytest.fixture
async def tenants(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data", corpus={"chunk_tokens": 40, "chunk_overlap": 0},
                             apps={"echo": {"collection": "kb", "model": "echo", "max_tokens": 8000}},
                             engines={"context_per_sequence": 16384}, rag={"min_score": -1})
    db = Database(settings.effective_database_url)
    db.upgrade()
    corpus = Corpus(settings, Registry(db, tmp_path / "models"), MemoryStore(), embedder=FakeEmbedder())
    for team, text in (("team-a", TEAM_A), ("team-b", TEAM_B)):
        folder = tmp_path / team
        folder.mkdir()
        (folder / f"{team}.md").write_text(f"# {team}\n\n{text}\n")
        assert not corpus.ingest_paths("kb", [folder], acl=[team]).errors
    engine = FakeEngine("echo", FakeRuntime(None), context_length=16384)  # answers with its prompt
    keys = KeyStore(db)
    secrets = {
        "a": keys.create("a", collections=["kb"], acl=["team-a"])[1],
        "b": keys.create("b", collections=["kb"], acl=["team-b"])[1],
        "other": keys.create("other", collections=["elsewhere"])[1],
        "models-only": keys.create("models-only", models=["echo"])[1],
    }
    app = Gateway(create_app(ModelPool({"echo": engine}), corpus=corpus), settings, keys=keys)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        def as_(name: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {secrets[name]}"}

        yield http, as_
    engine.close()
    keys.close()
    db.close()


async def test_retrieval_shows_a_tenant_only_its_own_chunks(tenants):
    http, as_ = tenants
    query = {"collection": "kb", "query": "Where does the Danube go? secret merger delta", "top_k": 10}
    for team, mine, theirs in (("a", TEAM_A, TEAM_B), ("b", TEAM_B, TEAM_A)):
        r = await http.post("/v1/retrieve", json=query, headers=as_(team))
        texts = [p["text"] for p in r.json()["data"]]
        assert any(mine in t for t in texts) and not any(theirs in t for t in texts), texts


async def test_an_app_grounds_a_tenant_only_on_its_own_chunks(tenants):
    http, as_ = tenants
    body = {"model": "echo", "messages": [{"role": "user", "content": "Tell me about the Danube delta merger"}]}
    r = await http.post("/v1/chat/completions", json=body, headers=as_("a"))
    assert r.status_code == 200, r.text
    prompt = r.json()["choices"][0]["message"]["content"]
    assert "Vienna" in prompt and "merger with Rhine" not in prompt
    assert all("team-a" in c["source"] for c in r.json()["choices"][0]["message"]["citations"])


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/v1/retrieve", {"collection": "kb", "query": "Danube"}),
    ("POST", "/v1/chat/completions", {"model": "echo", "messages": [{"role": "user", "content": "Danube?"}]}),
    ("GET", "/v1/collections/kb", None),
    ("GET", "/v1/collections/kb/documents", None),
])
async def test_a_key_outside_the_collection_gets_403(tenants, method, path, body):
    http, as_ = tenants
    r = await http.request(method, path, json=body, headers=as_("other"))
    assert r.status_code == 403, r.text
    assert r.json()["error"]["type"] == "permission_error"


async def test_collection_listing_and_changes_follow_the_scope(tenants):
    http, as_ = tenants
    assert [c["id"] for c in (await http.get("/v1/collections", headers=as_("a"))).json()["data"]] == ["kb"]
    assert (await http.get("/v1/collections", headers=as_("other"))).json()["data"] == []
    r = await http.delete("/v1/collections/kb", headers=as_("models-only"))  # unscoped keys may read, not change
    assert r.status_code == 403 and "may not change" in r.json()["error"]["message"]


async def test_no_key_or_a_wrong_one_is_401_once_keys_exist(tenants):
    http, _ = tenants
    assert (await http.get("/v1/models")).status_code == 401
    r = await http.get("/v1/models", headers={"Authorization": "Bearer afk-not-a-key"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert (await http.get("/healthz")).status_code == 200  # liveness stays open


async def test_documents_are_listed_shown_and_deleted_by_the_same_acl_as_retrieval(tenants):
    http, as_ = tenants
    docs = (await http.get("/v1/collections/kb/documents", headers=as_("a"))).json()["data"]
    assert [d["acl"] for d in docs] == [["team-a"]]  # team-b's document: not its source, title or ACL
    everything = (await http.get("/v1/collections/kb/documents", headers=as_("models-only"))).json()["data"]
    theirs = next(d for d in everything if d["acl"] == ["team-b"])  # an unscoped key reads every document
    mine = docs[0]
    shown = await http.get(f"/v1/collections/kb/documents/{mine['id']}", headers=as_("a"))
    assert shown.status_code == 200 and shown.json()["source"] == mine["source"]
    for method in ("GET", "DELETE"):
        r = await http.request(method, f"/v1/collections/kb/documents/{theirs['id']}", headers=as_("a"))
        assert r.status_code == 404, r.text
        assert "team-b" not in r.text and r.json()["error"]["code"] == "not_found"
    left = (await http.get("/v1/collections/kb/documents", headers=as_("b"))).json()["data"]
    assert [d["id"] for d in left] == [theirs["id"]]  # still there for its own team
