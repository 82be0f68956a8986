"""End to end: a real ``aifab up`` process with the default models, driven by the official openai SDK."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import numpy as np
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from aifab.testing.server import RemoteAifabServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {
        "AIFAB_ENGINES__MAX_BATCH": "8",
        "AIFAB_SERVE__MAX_QUEUE": "2",
        "AIFAB_SERVE__MAX_BODY_BYTES": "65536",
        "AIFAB_APPS": '{"handbook": {"collection": "handbook"}}',  # a collection nobody has ingested yet
    }
    with RemoteAifabServer(tmp_path_factory.mktemp("aifab"), env=env) as srv:
        yield srv


@pytest.fixture
def client(server):
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def ask(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def running(server) -> int:
    return httpx.get(f"{server.url}/readyz").json()["models"][CHAT]["running"]


NOISE = ("Traceback", "ModuleNotFoundError", "alembic", "Loading faiss", "it/s]", "%|", "\r", "Uvicorn running")


def test_start_up_prints_one_line_per_model_and_where_it_listens(server):
    """Runs first in this module: the log holds what `aifab up` printed on its way up, and nothing else (no
    library tracebacks, migration chatter or weight-loading bars)."""
    lines = server.log().splitlines()
    for noise in NOISE:
        assert noise not in server.log(), server.log()
    assert [line for line in lines if line.startswith("loading ")] == [
        f"loading {CHAT} (gguf, llamacpp engine)...", f"loading {EMBED} (sentence-transformers, "
        "sentence-transformers engine)..."]
    assert [line for line in lines if line.startswith("warning: ")] == [
        "warning: app 'handbook': collection 'handbook' does not exist in "
        f"{server.log_path.parent.resolve()}; the app answers 404 until `aifab ingest PATH -C handbook` fills it"]
    listening = [line for line in lines if server.url in line]
    assert len(listening) == 1 and len(lines) == 4, lines


def test_lists_both_default_models(client):
    ids = {m.id for m in client.models.list()}
    assert {CHAT, EMBED} <= ids


def test_chat_completion(client):
    r = client.chat.completions.create(model=CHAT, messages=ask("What is 2 + 2?"), max_tokens=20, temperature=0)
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 20
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_with_usage_matches_non_streaming(client):
    kwargs = dict(model=CHAT, messages=ask("Name three colours."), max_tokens=24, temperature=0)
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_sse_ends_with_done(server):
    body = {"model": CHAT, "messages": ask("Hi"), "max_tokens": 5, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_text_completion(client):
    r = client.completions.create(model=CHAT, prompt="The sky is", max_tokens=8, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=CHAT, prompt="The sky is", max_tokens=8, temperature=0, stream=True) if c.choices)
    assert streamed == r.choices[0].text


def test_embeddings_float_and_base64(client):
    r = client.embeddings.create(model=EMBED, input=["a cat sat on the mat", "a kitten on a rug", "stock prices fell"])
    vecs = np.array([d.embedding for d in r.data])
    assert vecs.shape == (3, 384)
    sims = vecs @ vecs.T
    assert sims[0, 1] > sims[0, 2]  # real semantic embeddings, not noise
    b = client.embeddings.create(model=EMBED, input="a cat sat on the mat", encoding_format="base64")
    decoded = np.frombuffer(base64.b64decode(b.data[0].embedding), dtype="<f4")
    assert np.allclose(decoded, vecs[0], atol=1e-5)
    assert r.usage.prompt_tokens > 0


def test_embeddings_base64_raw_wire_format(server):
    r = httpx.post(f"{server.url}/v1/embeddings", json={"model": EMBED, "input": "hi", "encoding_format": "base64"})
    raw = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    assert raw.shape == (384,) and abs(np.linalg.norm(raw) - 1) < 1e-3


def test_json_schema_output(client):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["city", "population"], "additionalProperties": False}
    r = client.chat.completions.create(
        model=CHAT, messages=ask("Give a city and its population."), max_tokens=150, seed=7,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
    )
    data = json.loads(r.choices[0].message.content)
    assert set(data) == {"city", "population"} and isinstance(data["population"], int)


def test_json_object_output(client):
    # a seed with which the small default model closes its object within 150 tokens, in its packaged Q4_1
    # weights and in their Q8_0 copy alike (with some seeds it lists values until max_tokens)
    r = client.chat.completions.create(model=CHAT, messages=ask("Describe a dog in JSON."), max_tokens=150,
                                       seed=2, response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_same_seed_same_answer(client):
    kwargs = dict(model=CHAT, messages=ask("Write a short poem."), max_tokens=30, temperature=1.0, seed=42)
    a = client.chat.completions.create(**kwargs).choices[0].message.content
    b = client.chat.completions.create(**kwargs).choices[0].message.content
    assert a == b


async def test_eight_concurrent_streams_complete(server):
    client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)

    async def one(i: int) -> tuple[str, int]:
        stream = await client.chat.completions.create(
            model=CHAT, messages=ask(f"Tell me fact number {i} about the sea."), max_tokens=24, temperature=0.5,
            seed=i, stream=True, stream_options={"include_usage": True})
        text, usage = [], 0
        async for c in stream:
            if c.choices:
                text.append(c.choices[0].delta.content or "")
            elif c.usage:
                usage = c.usage.completion_tokens
        return "".join(text), usage

    results = await asyncio.gather(*(one(i) for i in range(8)))
    assert all(text and 0 < n <= 24 for text, n in results)
    await client.close()


def test_mid_stream_disconnect_frees_the_slot(server):
    body = {"model": CHAT, "messages": ask("Write a very long story."), "max_tokens": 1500, "stream": True,
            "ignore_eos": True}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        while not next(lines).startswith("data: "):
            pass
        assert running(server) == 1  # still generating (1500 tokens ahead) while we hold the stream
    deadline = time.monotonic() + 15
    while running(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running(server) == 0


async def test_queue_full_is_429_with_retry_after(server):
    # 8 slots + a queue of 2: the 11th concurrent request is refused at once, and the server stays up.
    body = {"model": CHAT, "messages": ask("Write a very long story."), "max_tokens": 1500, "stream": True,
            "ignore_eos": True}
    release = asyncio.Event()

    async def hold(http: httpx.AsyncClient) -> None:
        async with http.stream("POST", f"{server.url}/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            await release.wait()

    async with httpx.AsyncClient(timeout=120) as http:
        holders = [asyncio.create_task(hold(http)) for _ in range(10)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = (await http.get(f"{server.url}/readyz")).json()["models"][CHAT]
            if state["running"] == 8 and state["waiting"] == 2:
                break
            await asyncio.sleep(0.1)
        r = await http.post(f"{server.url}/v1/chat/completions", json={**body, "stream": False})
        release.set()
        for task in holders:
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["type"] == "rate_limit_error"
    deadline = time.monotonic() + 15
    while running(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running(server) == 0


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b'{"model": "smollm2-135m-instruct", "messages": "hello"}', 400, "messages"),
        (b'{"model": "smollm2-135m-instruct", "messages": []}', 400, "messages"),
        (b'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
         400, "temperature"),
        (b'{"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
    ],
)
def test_bad_requests_get_the_openai_envelope(server, body, status, param):
    r = httpx.post(f"{server.url}/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param and err["message"]
    assert "Traceback" not in r.text


def test_sdk_raises_typed_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=ask("x"))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=CHAT, messages=[])


def test_prompt_longer_than_context_says_by_how_much(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CHAT, messages=ask("hello " * 2100), max_tokens=5)
    body = err.value.body
    assert body["code"] == "context_length_exceeded"
    assert "2048" in body["message"] and "shorten it by" in body["message"]


def test_models_report_the_context_the_server_enforces(client):
    listed = {m.id: m for m in client.models.list()}
    assert all(m.created > 0 for m in listed.values()), listed
    context = listed[CHAT].model_extra["context_length"]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CHAT, messages=ask("hello " * (context + 50)), max_tokens=5)
    assert f"this model's context is {context} tokens" in err.value.body["message"]


def test_every_response_names_the_model_version(client):
    raw = client.chat.completions.with_raw_response.create(model=CHAT, messages=ask("Hi"), max_tokens=3)
    version = raw.headers["x-aifab-model-version"]
    assert version.startswith(f"{CHAT}@") and raw.parse().system_fingerprint == version
    chunks = list(client.chat.completions.create(model=CHAT, messages=ask("Hi"), max_tokens=3, stream=True))
    assert chunks and {c.system_fingerprint for c in chunks} == {version}
    raw = client.embeddings.with_raw_response.create(model=EMBED, input="x")
    assert raw.headers["x-aifab-model-version"].startswith(f"{EMBED}@")


def test_body_over_limit_is_413(server):
    big = {"model": CHAT, "messages": ask("x" * 70000)}
    r = httpx.post(f"{server.url}/v1/chat/completions", json=big)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_health_ready_and_metrics(server, client):
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    client.chat.completions.create(model=CHAT, messages=ask("Hi"), max_tokens=3)
    text = httpx.get(f"{server.url}/metrics").text
    for name in ("aifab_requests_total", "aifab_errors_total", "aifab_time_to_first_token_seconds_bucket",
                 "aifab_inter_token_latency_seconds_bucket", "aifab_prompt_tokens_total",
                 "aifab_completion_tokens_total", "aifab_queue_depth"):
        assert name in text, name
    assert "Traceback" not in server.log(), server.log()[-3000:]
    assert server.proc.poll() is None  # still up after every bad request above
