"""``/mcp`` of a real in-process stack, and the forms of attack on its key scopes (tests and
``benchmarks/tools_mcp.py`` run the same ones).

:func:`mcp_stack` serves the gateway and app on a loopback uvicorn: a fake answering model, the fake
embedder, two ACL-tagged documents in collection ``kb``, an app ``rivers`` over it, and a real stdio MCP
server (``mcp-server-time``) configured as ``[tools.time]``. :data:`ATTACKS` are calls that a key scoped
to ``search`` over another collection (:data:`SCOPED`) must never get an answer to.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

TEAM_A = "The Danube flows through Vienna and Budapest into the Black Sea."
TEAM_B = "The Danube delta is where the secret merger with Rhine Holdings will be signed."
SCOPED = {"tools": ["search"], "collections": ["elsewhere"]}
"""The attacked key: it may use ``search``, over a collection that is not ``kb``."""

UTC = {"timezone": "UTC"}
KB = {"collection": "kb", "query": "Danube merger"}
ATTACKS: list[tuple[str, str, dict[str, Any]]] = [
    ("a hidden tool by its name", "time-get_current_time", UTC),
    ("the other tool of the hidden entry", "time-convert_time",
     {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Europe/Vienna"}),
    ("the entry name for its tool", "time", UTC),
    ("upper case", "TIME-get_current_time", UTC),
    ("a trailing space", "time-get_current_time ", UTC),
    ("a trailing NUL", "time-get_current_time\x00", UTC),
    ("a path in the name", "search/../time-get_current_time", UTC),
    ("the allowed name as a prefix", "search-../time-get_current_time", UTC),
    ("a hidden built-in", "ask", {"app": "rivers", "question": "Where is the merger signed?"}),
    ("an allowed tool on a collection outside the scope", "search", KB),
    ("the collection name in upper case", "search", {**KB, "collection": "KB"}),
    ("the collection with a path", "search", {**KB, "collection": "elsewhere/../kb"}),
    ("an extra argument naming the collection", "search", {**KB, "collection": "elsewhere", "collections": ["kb"]}),
]


@contextmanager
def mcp_stack(tmp: Path, keys: Mapping[str, Mapping[str, Any]]) -> Iterator[tuple[str, dict[str, str]]]:
    """The stack's base URL and the secret of each key of ``keys`` (name -> KeyStore.create scopes)."""
    from aifab.config import load_settings
    from aifab.corpus.service import Corpus
    from aifab.gateway.front import Gateway
    from aifab.gateway.keys import KeyStore
    from aifab.registry import Registry
    from aifab.serve import ModelPool, create_app
    from aifab.state import Database
    from aifab.testing import FakeEmbedder, FakeEngine, FakeRuntime, MemoryStore
    from aifab.testing.server import ThreadedServer

    settings = load_settings(
        data_dir=tmp / "data", corpus={"chunk_tokens": 40, "chunk_overlap": 0}, engines={"context_per_sequence": 16384},
        apps={"rivers": {"collection": "kb", "model": "answerer", "temperature": 0}}, rag={"min_score": -1},
        tools={"time": {"kind": "mcp", "command": [sys.executable, "-m", "mcp_server_time"]}})
    db = Database(settings.effective_database_url)
    db.upgrade()
    corpus = Corpus(settings, Registry(db, tmp / "models"), MemoryStore(), embedder=FakeEmbedder(dimensions=256))
    for team, text in (("team-a", TEAM_A), ("team-b", TEAM_B)):
        (tmp / team).mkdir()
        (tmp / team / f"{team}.md").write_text(f"# {team}\n\n{text}\n")
        assert not corpus.ingest_paths("kb", [tmp / team], acl=[team]).errors
    engine = FakeEngine("answerer", FakeRuntime("The Danube reaches the Black Sea [1]."), context_length=8192)
    store = KeyStore(db)
    secrets = {name: store.create(name, **scopes)[1] for name, scopes in keys.items()}
    try:
        with ThreadedServer(Gateway(create_app(ModelPool({"answerer": engine}), corpus=corpus), settings,
                                    keys=KeyStore(db))) as running:
            yield running.url, secrets
    finally:
        engine.close()
        store.close()
        db.close()


@asynccontextmanager
async def mcp_client(url: str, secret: str | None) -> AsyncIterator[Any]:
    """The official client on ``url``/mcp, with ``secret`` as its Bearer key (None: no key)."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    async with Client(streamable_http_client(f"{url}/mcp", http_client=create_mcp_http_client(headers=headers))) as c:
        yield c


async def run_attacks(url: str, secret: str) -> list[tuple[str, str]]:
    """Each attack's description and outcome: ``refused`` (an MCP error), ``error result`` (the tool said
    no), or ``GOT THROUGH`` (an answer, or a hidden tool listed)."""
    from mcp import MCPError

    outcomes = []
    async with mcp_client(url, secret) as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        outcomes.append(("tools/list shows only the scope", "ok" if listed == {"search"} else "GOT THROUGH"))
        for what, name, arguments in ATTACKS:
            try:
                result = await client.call_tool(name, arguments)
            except MCPError:
                outcomes.append((what, "refused"))
                continue
            outcomes.append((what, "error result" if result.is_error and TEAM_B not in str(result.content)
                             else "GOT THROUGH"))
    return outcomes
