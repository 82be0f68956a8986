"""API keys: only a hash is kept, scopes round-trip, and a running gateway's cache sees another process's
revocation or creation on its very next request (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from aifab.errors import Conflict, InvalidRequest, NotFound
from aifab.gateway.keys import KeyStore, hash_secret
from aifab.state import Database
from aifab.state.tables import ApiKeyRow


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'aifab.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def open_store(url):
    """KeyStores on separate Database objects, as separate processes (server and CLI) would have."""
    opened: list[tuple[Database, KeyStore]] = []

    def open_() -> KeyStore:
        db = Database(url)
        db.upgrade()
        opened.append((db, KeyStore(db)))
        return opened[-1][1]

    yield open_
    for db, store in opened:
        store.close()
        db.close()


def test_create_returns_the_secret_once_and_keeps_only_its_hash(open_store):
    store = open_store()
    key, secret = store.create("team-a", models=["m1", "m2"], acl=["public"], rpm=10, budget_tokens=5000)
    assert secret.startswith("afk-") and len(secret) > 40 and key.prefix == secret[:10]
    assert key.models == ("m1", "m2") and key.collections is None and key.acl == ("public",)
    assert (key.rpm, key.tpm, key.budget_tokens) == (10, None, 5000)
    with store.db.session() as s:
        row = s.scalars(select(ApiKeyRow)).one()
    assert row.secret_hash == hash_secret(secret) and secret not in str(vars(row))
    assert store.authenticate(secret) == key == store.get("team-a") == store.get(key.id)
    assert store.authenticate(secret + "x") is None and store.authenticate("") is None


def test_names_are_checked_and_unique(open_store):
    store = open_store()
    store.create("dup")
    with pytest.raises(Conflict, match="dup"):
        store.create("dup")
    for bad in ("", "has space", "x" * 129, "semi;colon"):
        with pytest.raises(InvalidRequest, match="bad key name"):
            store.create(bad)
    with pytest.raises(InvalidRequest, match="rpm"):
        store.create("zero-rpm", rpm=0)
    with pytest.raises(NotFound, match="nobody"):
        store.get("nobody")


def test_revoke_hides_the_key_and_a_second_revoke_is_an_error(open_store):
    store = open_store()
    assert not store.any_active()
    key, secret = store.create("k1")
    store.create("k2")
    assert store.any_active()
    revoked = store.revoke("k1")
    assert revoked.revoked_at is not None
    with pytest.raises(Conflict, match="'k1' was already revoked on"):
        store.revoke(key.id)
    assert store.get("k1").revoked_at == revoked.revoked_at
    assert [k.name for k in store.list()] == ["k2"]
    assert [k.name for k in store.list(include_revoked=True)] == ["k1", "k2"]
    assert store.authenticate(secret) is None


def test_the_cache_sees_another_process_at_once(open_store):
    server, cli = open_store(), open_store()
    key, secret = cli.create("alpha")
    assert server.authenticate(secret) == key  # first call loads the cache
    _, later = cli.create("beta")
    assert server.authenticate(later) is not None  # created elsewhere, seen on the next call
    cli.revoke("alpha")
    assert server.authenticate(secret) is None  # revoked elsewhere, refused on the next call
    assert server.authenticate(later) is not None


def test_a_tool_scope_round_trips_and_an_entry_covers_its_tools(open_store):
    store = open_store()
    agent, _ = store.create("agent", tools=["db", "search"])
    nothing, _ = store.create("nothing", tools=[])
    assert agent.tools == ("db", "search") and store.get("agent") == agent
    assert nothing.tools == () and store.create("everything")[0].tools is None
    assert agent.allows_tool("db") and agent.allows_tool("db-query") and agent.allows_tool("search")
    assert not agent.allows_tool("dbx") and not agent.allows_tool("web") and not nothing.allows_tool("search")
    assert store.create("boss", tools=[], admin=True)[0].allows_tool("web")
