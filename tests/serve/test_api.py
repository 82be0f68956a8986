"""The HTTP layer over the fake engine (no model weights): formats, errors, limits."""

from __future__ import annotations

import json

import httpx
import pytest

from aifab.serve import ModelPool, create_app
from aifab.testing import FakeEngine, FakeRuntime


@pytest.fixture
async def client():
    engine = FakeEngine(runtime=FakeRuntime("Hello there, friend."))
    app = create_app(ModelPool({"fake": engine}), max_body_bytes=4096)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c
    engine.close()


def chat(**extra):
    return {"model": "fake", "messages": [{"role": "user", "content": "hi"}], **extra}


async def test_chat_response_shape(client):
    r = await client.post("/v1/chat/completions", json=chat(temperature=0))
    body = r.json()
    assert r.status_code == 200 and body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello there, friend."}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == len("Hello there, friend.")


async def test_stop_and_max_tokens(client):
    r = await client.post("/v1/chat/completions", json=chat(temperature=0, stop=[","]))
    assert r.json()["choices"][0]["message"]["content"] == "Hello there"
    r = await client.post("/v1/chat/completions", json=chat(temperature=0, max_tokens=5))
    choice = r.json()["choices"][0]
    assert choice["message"]["content"] == "Hello" and choice["finish_reason"] == "length"


async def test_stream_format_and_usage(client):
    r = await client.post("/v1/chat/completions", json=chat(temperature=0, stream=True,
                                                            stream_options={"include_usage": True}))
    lines = [line for line in r.text.split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "Hello there, friend."
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_completions_echo(client):
    r = await client.post("/v1/completions", json={"model": "fake", "prompt": "Say: ", "echo": True, "temperature": 0})
    assert r.json()["choices"][0]["text"] == "Say: Hello there, friend."


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (chat(n=2), 400, "n"),
        (chat(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
        (chat(max_tokens=0), 400, "max_tokens"),
        (chat(response_format={"type": "json_object"}), 400, "response_format"),
        ({"model": "fake", "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role"),
        ({"model": "fake"}, 400, "messages"),
        (chat(model="other"), 404, "model"),
        ({"model": "fake", "input": "x"}, 400, "messages"),
    ],
)
async def test_invalid_requests(client, body, status, param):
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


async def test_embeddings_on_a_chat_model_is_400(client):
    r = await client.post("/v1/embeddings", json={"model": "fake", "input": "x"})
    assert r.status_code == 400 and "does not produce embeddings" in r.json()["error"]["message"]


async def test_oversized_body_is_413_even_without_content_length(client):
    async def chunks():
        for _ in range(10):
            yield b"x" * 1000

    r = await client.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


async def test_unknown_route_is_enveloped(client):
    r = await client.get("/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
