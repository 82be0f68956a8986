"""One pass through the process: the gateway reads, limits and validates a model request once and hands the
object to this process's serving app, whose events (the gateway's id, the public name) reach the client as
they are when no output check is active; bad bodies are 400s naming the field on every route."""

from __future__ import annotations

import httpx
import orjson
import pytest

from aifab.api import aifab_event
from aifab.config import load_settings
from aifab.finetune.service import FinetuneService
from aifab.gateway import rewrite
from aifab.gateway.exchange import Exchange
from aifab.gateway.front import Gateway
from aifab.gateway.guards import Guardrails
from aifab.serve import ModelPool, create_app, routing
from aifab.state import Database
from aifab.state.tables import AuditRow
from aifab.testing import FakeEngine, FakeRuntime

TEXT = "Hello there, friend."


@pytest.fixture
async def build(tmp_path):
    made: list[tuple[Gateway, FakeEngine, Database]] = []

    async def make(*, guardrails: bool, finetune: bool = False) -> tuple[httpx.AsyncClient, Gateway]:
        settings = load_settings(data_dir=tmp_path, serve={"max_body_bytes": 65536}, gateway={
            "routes": {"public": {"upstreams": [{"model": "chat"}]}},  # this process's "chat", called "public"
            "guardrails": {"enabled": guardrails}, "log_content": True})
        db = Database(settings.effective_database_url)
        db.upgrade()
        engine = FakeEngine("chat", FakeRuntime(TEXT))
        ft = FinetuneService(db, tmp_path) if finetune else None
        gw = Gateway(create_app(ModelPool({"chat": engine}), max_body_bytes=65536, finetune=ft), settings,
                     guardrails=Guardrails(settings.gateway.guardrails), db=db)
        made.append((gw, engine, db))
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://t"), gw

    yield make
    for gw, engine, db in made:
        await gw.aclose()
        engine.close()
        db.close()


def _events(text: str) -> list[dict]:
    lines = [e.removeprefix("data: ") for e in text.split("\n\n") if e]
    assert lines[-1] == "[DONE]"
    return [orjson.loads(e) for e in lines[:-1]]


def _chat(**extra: object) -> dict:
    return {"model": "public", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, **extra}


@pytest.mark.parametrize("guardrails", [False, True])
async def test_a_local_stream_carries_the_gateway_id_and_the_public_name(build, monkeypatch, guardrails):
    parsed: list[bytes] = []
    monkeypatch.setattr(routing, "loads", lambda body: parsed.append(body))  # serve's own JSON parser
    fed: list[bytes] = []
    feed = rewrite.StreamRewriter.feed
    monkeypatch.setattr(rewrite.StreamRewriter, "feed", lambda self, chunk: fed.append(chunk) or feed(self, chunk))
    http, gw = await build(guardrails=guardrails)
    async with http:
        r = await http.post("/v1/chat/completions", json=_chat(stream=True))
    events = _events(r.text)
    assert r.status_code == 200 and parsed == []  # serve got the validated request, not bytes
    assert {e["id"] for e in events} == {r.headers["x-request-id"]} and {e["model"] for e in events} == {"public"}
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == TEXT
    assert all("usage" not in e for e in events)  # the client did not ask for it
    assert bool(fed) == guardrails  # no output check: the events were neither parsed nor re-encoded
    gw.audit.flush()
    with gw.db.session() as s:
        row = s.query(AuditRow).one()
    assert row.id == r.headers["x-request-id"] and row.completion_tokens == len(TEXT) and row.prompt_tokens > 0
    assert row.response == TEXT and row.ttft_ms is not None and row.ttft_ms <= row.latency_ms


async def test_a_relayed_stream_gives_the_usage_the_client_asked_for(build):
    http, gw = await build(guardrails=False)
    async with http:
        r = await http.post("/v1/chat/completions", json=_chat(stream=True, stream_options={"include_usage": True}))
    last = _events(r.text)[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == len(TEXT)


async def test_a_relayed_whole_answer_is_serves_own(build):
    http, gw = await build(guardrails=False)
    async with http:
        r = await http.post("/v1/chat/completions", json=_chat(max_tokens=5))
    body = r.json()
    assert body["id"] == r.headers["x-request-id"] and body["model"] == "public"
    assert body["choices"][0]["message"]["content"] == TEXT[:5] and body["usage"]["completion_tokens"] == 5


@pytest.mark.parametrize("role", [{"x": 1}, ["user", "system"]])
async def test_a_role_that_is_not_a_string_is_a_400_naming_it(build, role):
    http, _ = await build(guardrails=True)
    async with http:
        r = await http.post("/v1/chat/completions", json={"model": "chat", "messages": [{"role": role, "content": "x"}]})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "messages.0.role"


async def test_json_nested_10000_deep_is_a_400_on_every_route(build):
    http, _ = await build(guardrails=True, finetune=True)
    deep = b'{"model": "chat", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    async with http:
        for path in ("/v1/chat/completions", "/v1/fine_tuning/jobs", "/v1/feedback", "/v1/retrieve"):
            r = await http.post(path, content=deep, headers={"content-type": "application/json"})
            assert r.status_code == 400, (path, r.text)
            assert "not valid JSON" in r.json()["error"]["message"]


async def test_reports_and_the_model_list_are_documented_routes(build):
    http, _ = await build(guardrails=True, finetune=True)
    async with http:
        spec = (await http.get("/openapi.json")).json()
        models = (await http.get("/v1/models")).json()["data"]
    assert {"/v1/usage", "/v1/feedback", "/v1/models", "/v1/chat/completions"} <= set(spec["paths"])
    assert "requestBody" in spec["paths"]["/v1/fine_tuning/jobs"]["post"]
    assert {m["id"] for m in models} == {"chat", "public"}


async def test_a_body_over_the_limit_is_refused_once_by_the_gateway(build):
    http, _ = await build(guardrails=True)
    async with http:
        r = await http.post("/v1/chat/completions", json=_chat(user="x" * 70_000))
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_aifab_events_pass_the_rewriter_untouched():
    ex = Exchange("chatcmpl-gw", "chat.completions", "public", None)
    rw = rewrite.StreamRewriter(ex, ex.id, True, lambda: None, False, False)
    event = aifab_event("citations", [{"chunk_id": "c1", "text": "x"}], id="chatcmpl-up",
                        object="chat.completion.chunk", created=1, model="upstream-name")
    assert rw.feed(event) == event and ex.context == ["c1"]


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/fine_tuning/jobs", {"model": "chat", "training_file": "file-x", "hyperparameters": True}, "hyperparameters"),
    ("/v1/fine_tuning/jobs", {"model": "chat", "training_file": "file-x", "method": {"type": "supervised",
                                                                                   "supervised": [1]}},
     "method.supervised"),
    ("/v1/fine_tuning/jobs", {"model": "chat", "training_file": "file-x", "hyperparameters": {"n_epochs": 7e77}},
     "hyperparameters.n_epochs"),  # sent as 7e777: a float too large, infinite once parsed
])
async def test_malformed_fine_tuning_jobs_are_400s_naming_the_field(build, path, body, param):
    http, _ = await build(guardrails=True, finetune=True)
    async with http:
        r = await http.post(path, content=orjson.dumps(body).replace(b"7e+77", b"7e777"),
                            headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


async def test_a_usage_window_before_the_year_1_is_a_400(build):
    http, _ = await build(guardrails=True)
    async with http:
        r = await http.get("/v1/usage", params={"since": "99999999999d"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "since"
