"""``/mcp`` of a real server (the gateway and app on a loopback uvicorn, fake engines and embedder, a real
stdio MCP server as a configured tool), driven by the official ``mcp`` client: what each key lists and may
call, retrieval and apps under the key's collection and ACL scope, and keys that are missing or wrong."""

from __future__ import annotations

import httpx
import pytest
from mcp import Client, MCPError

from aifab.config import load_settings
from aifab.gateway.front import Gateway
from aifab.gateway.keys import KeyStore
from aifab.serve import ModelPool, create_app
from aifab.state import Database
from aifab.testing.mcp import ATTACKS, SCOPED, TEAM_A, TEAM_B, mcp_client, mcp_stack, run_attacks
from aifab.testing.server import ThreadedServer

KEYS = {  # name -> scopes
    "all": {},
    "search-only": {"tools": ["search"], "acl": ["team-a"]},
    "time-only": {"tools": ["time"]},
    "no-tools": {"tools": []},
    "elsewhere": {"collections": ["elsewhere"]},
    "scoped": SCOPED,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mcp_stack(tmp_path_factory.mktemp("mcp"), KEYS) as running:
        yield running


def mcp_as(server, key: str | None):
    url, secrets = server
    return mcp_client(url, secrets.get(key, key) if key else None)


async def tool_names(client: Client) -> list[str]:
    return sorted(t.name for t in (await client.list_tools()).tools)


async def test_tools_list_has_search_ask_and_the_configured_tools(server):
    async with mcp_as(server, "all") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert sorted(tools) == ["ask", "search", "time-convert_time", "time-get_current_time"]
        assert "kb" in tools["search"].description and tools["ask"].input_schema["properties"]["app"]["enum"] == ["rivers"]
        assert tools["time-get_current_time"].input_schema["required"] == ["timezone"]


async def test_search_gives_passages_with_source_and_offsets(server):
    async with mcp_as(server, "all") as client:
        result = await client.call_tool("search", {"collection": "kb", "query": "Danube Vienna Budapest", "top_k": 2})
    assert not result.is_error, result.content
    best = result.structured_content["passages"][0]
    assert TEAM_A in best["text"] and best["source"].endswith("team-a.md") and best["end"] > best["start"]
    assert f"chars {best['start']}-{best['end']}" in result.content[0].text


async def test_ask_answers_with_citations(server):
    async with mcp_as(server, "all") as client:
        result = await client.call_tool("ask", {"app": "rivers", "question": "Where does the Danube go?"})
    assert not result.is_error, result.content
    assert result.structured_content["answer"] == "The Danube reaches the Black Sea [1]."
    assert result.structured_content["citations"][0]["cited"] is True
    assert "Sources:\n[1] " in result.content[0].text


async def test_a_configured_mcp_tool_runs_through_aifab(server):
    async with mcp_as(server, "all") as client:
        result = await client.call_tool("time-get_current_time", {"timezone": "UTC"})
        assert not result.is_error and result.structured_content["timezone"] == "UTC"
        bad = await client.call_tool("time-get_current_time", {"timezone": 3})
        assert bad.is_error and "timezone" in bad.content[0].text  # aifab's schema check, before the server


async def test_a_tool_scope_hides_and_refuses_tools(server):
    async with mcp_as(server, "time-only") as client:
        assert await tool_names(client) == ["time-convert_time", "time-get_current_time"]
        with pytest.raises(MCPError, match="the key 'time-only' may not use the tool 'search'"):
            await client.call_tool("search", {"collection": "kb", "query": "Danube"})
    async with mcp_as(server, "no-tools") as client:
        assert await tool_names(client) == []
        with pytest.raises(MCPError, match="may not use the tool 'time-get_current_time'"):
            await client.call_tool("time-get_current_time", {"timezone": "UTC"})
    async with mcp_as(server, "search-only") as client:
        assert await tool_names(client) == ["search"]
        with pytest.raises(MCPError, match="no tool named 'nope'"):
            await client.call_tool("nope", {})


async def test_search_follows_the_keys_acl_and_collection_scope(server):
    query = {"collection": "kb", "query": "Danube secret merger delta Vienna", "top_k": 10}
    async with mcp_as(server, "search-only") as client:  # ACL team-a
        texts = [p["text"] for p in (await client.call_tool("search", query)).structured_content["passages"]]
    assert any(TEAM_A in t for t in texts) and not any(TEAM_B in t for t in texts)
    async with mcp_as(server, "elsewhere") as client:
        assert "ask" not in await tool_names(client)  # its only app reads a collection outside the scope
        result = await client.call_tool("search", query)
    assert result.is_error and "may not use the collection 'kb'" in result.content[0].text


async def test_a_missing_or_wrong_key_is_refused(server):
    url, _ = server
    for key in (None, "afk-not-a-key"):
        with pytest.raises(BaseExceptionGroup) as caught:  # the SDK's task groups wrap what the server said
            async with mcp_as(server, key):
                pass
        assert caught.group_contains(MCPError, match="error response", depth=2)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        r = httpx.post(f"{url}/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


async def test_without_keys_mcp_is_open_like_every_route(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    db = Database(settings.effective_database_url)
    db.upgrade()
    keys = KeyStore(db)  # no key exists: a loopback server needs none
    try:
        with ThreadedServer(Gateway(create_app(ModelPool({})), settings, keys=keys)) as running:
            async with mcp_as((running.url, {}), None) as client:
                assert await tool_names(client) == []
    finally:
        keys.close()
        db.close()


async def test_the_http_tool_routes_follow_the_same_scope(server):
    url, secrets = server
    run = "/v1/tools/time-get_current_time"
    async with httpx.AsyncClient(base_url=url) as http:
        def as_(key: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {secrets[key]}"}

        listed = (await http.get("/v1/tools", headers=as_("time-only"))).json()["data"]
        assert sorted(t["function"]["name"] for t in listed) == ["time-convert_time", "time-get_current_time"]
        assert (await http.get("/v1/tools", headers=as_("no-tools"))).json()["data"] == []
        r = await http.post(run, json={"arguments": {"timezone": "UTC"}}, headers=as_("time-only"))
        assert r.status_code == 200 and r.json()["data"]["timezone"] == "UTC", r.text
        r = await http.post(run, json={"arguments": {"timezone": "UTC"}}, headers=as_("search-only"))
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
        assert "may not use the tool 'time-get_current_time'" in r.json()["error"]["message"]
        r = await http.post(run, json={"arguments": {"timezone": 3}}, headers=as_("all"))
        assert r.status_code == 400 and r.json()["error"]["code"] == "tool_refused"


async def test_no_attack_on_a_keys_scope_gets_through(server):
    url, secrets = server
    outcomes = await run_attacks(url, secrets["scoped"])
    assert len(outcomes) == len(ATTACKS) + 1
    assert [o for o in outcomes if o[1] == "GOT THROUGH"] == []
