"""Tool calls through the gateway: the output guardrails see a call's arguments as they see content (a
secret in them is redacted, streamed or not), and the audit log records each call's tool name (with the
redacted arguments only for keys that log content)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from aifab.config import load_settings
from aifab.gateway.front import Gateway
from aifab.gateway.guards import Guardrails
from aifab.gateway.keys import KeyStore
from aifab.serve import ModelPool, create_app
from aifab.state import Database
from aifab.state.tables import AuditRow
from aifab.testing import FakeEngine, FakeRuntime

SECRET = "sk-proj-abc123DEF456ghi789JKL012mno"
REPLY = ('<tool_call>\n{"name": "store_key", "arguments": {"service": "billing", "key": "' + SECRET + '"}}\n</tool_call>\n'
         '<tool_call>\n{"name": "notify", "arguments": {"to": "ops"}}\n</tool_call>')
TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in ("store_key", "notify")]
BODY = {"model": "fake", "messages": [{"role": "user", "content": "Save my billing key."}], "tools": TOOLS,
        "temperature": 0, "max_tokens": 400}


@pytest.fixture
async def gateway(tmp_path: Any) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, dict[str, str]], Database]]:
    async for x in serve(tmp_path, {"output_secrets": "redact"}):
        yield x


async def serve(tmp_path: Any, guardrails: dict[str, Any]) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, dict[str, str]], Database]]:
    settings = load_settings(data_dir=tmp_path, gateway={"guardrails": guardrails})
    db = Database(settings.effective_database_url)
    db.upgrade()
    keys = KeyStore(db)
    auth = {name: {"Authorization": f"Bearer {keys.create(name, log_content=name == 'logged')[1]}"}
            for name in ("logged", "plain")}
    engine = FakeEngine("fake", FakeRuntime(REPLY, word_tokens=False), context_length=4096)
    gw = Gateway(create_app(ModelPool({"fake": engine})), settings, keys=keys, db=db,
                 guardrails=Guardrails(settings.gateway.guardrails))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://t") as http:
        yield http, auth, db
    await gw.aclose()
    engine.close()
    db.close()


def audited(db: Database, rid: str) -> AuditRow:
    with db.session() as s:
        row = s.get(AuditRow, rid)
    assert row is not None
    return row


async def test_a_secret_in_arguments_is_redacted_whole(gateway: Any) -> None:
    http, auth, db = gateway
    r = await http.post("/v1/chat/completions", headers=auth["logged"], json=BODY)
    assert r.status_code == 200, r.text
    calls = r.json()["choices"][0]["message"]["tool_calls"]
    assert SECRET not in r.text
    assert [c["function"]["name"] for c in calls] == ["store_key", "notify"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"service": "billing", "key": "[SECRET]"}
    _flush(http)
    row = audited(db, r.json()["id"])
    assert [c["name"] for c in row.tool_calls] == ["store_key", "notify"]
    assert SECRET not in json.dumps(row.tool_calls) and "[SECRET]" in row.tool_calls[0]["arguments"]


async def test_a_secret_in_streamed_arguments_is_redacted_whole(gateway: Any) -> None:
    http, auth, db = gateway
    r = await http.post("/v1/chat/completions", headers=auth["plain"], json={**BODY, "stream": True})
    events = [orjson.loads(ln[6:]) for ln in r.text.split("\n\n") if ln.startswith("data: {")]
    assert SECRET not in r.text
    fragments = [f for e in events for c in e["choices"] for f in c["delta"].get("tool_calls") or []]
    args = {i: "".join(f["function"].get("arguments") or "" for f in fragments if f["index"] == i) for i in (0, 1)}
    assert json.loads(args[0]) == {"service": "billing", "key": "[SECRET]"} and json.loads(args[1]) == {"to": "ops"}
    assert [f["function"]["name"] for f in fragments if f.get("id")] == ["store_key", "notify"]
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"
    _flush(http)
    row = audited(db, events[0]["id"])
    assert row.tool_calls == [{"name": "store_key"}, {"name": "notify"}]  # no arguments: the key logs no content


@pytest.mark.parametrize("stream", [False, True])
async def test_without_output_checks_the_relayed_answer_still_logs_its_calls(tmp_path: Any, stream: bool) -> None:
    async for http, auth, db in serve(tmp_path, {"enabled": False}):
        r = await http.post("/v1/chat/completions", headers=auth["logged"], json={**BODY, "stream": stream})
        rid = r.json()["id"] if not stream else orjson.loads(r.text.split("\n\n")[0][6:])["id"]
        _flush(http)
        row = audited(db, rid)
        assert [c["name"] for c in row.tool_calls] == ["store_key", "notify"]
        assert SECRET not in json.dumps(row.tool_calls)  # the audit log is redacted even with guardrails off
        assert json.loads(row.tool_calls[1]["arguments"]) == {"to": "ops"}


def _flush(http: httpx.AsyncClient) -> None:
    http._transport.app.audit.flush()  # type: ignore[attr-defined]  # rows are written in batches
