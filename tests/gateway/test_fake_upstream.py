"""The fake upstream (``aifab.testing.upstream``) as a client sees it: through the official openai SDK."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai import OpenAI

from aifab.testing import FakeUpstream
from aifab.testing.upstream import DEFAULT_REPLY, UpstreamOptions, parse_args, to_argv

pytestmark = pytest.mark.integration

PROMPT = [{"role": "user", "content": "Say hello in five words"}]


def client(up: FakeUpstream, key: str = "unused", timeout: float = 10) -> OpenAI:
    return OpenAI(base_url=up.url, api_key=key, max_retries=0, timeout=timeout)


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream(name="replica-a") as up:
        yield up


def test_chat_reply_usage_and_replica_name(upstream):
    raw = client(upstream).chat.completions.with_raw_response.create(model="m1", messages=PROMPT)
    out = raw.parse()
    assert raw.headers["x-upstream"] == "replica-a"
    assert out.model == "m1" and out.system_fingerprint == "replica-a"
    assert out.choices[0].message.content == DEFAULT_REPLY
    assert out.choices[0].finish_reason == "stop"
    n = len(DEFAULT_REPLY.split())
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (5, n, 5 + n)


def test_max_tokens_cuts_the_reply_in_words(upstream):
    out = client(upstream).chat.completions.create(model="m", messages=PROMPT, max_tokens=3)
    assert out.choices[0].message.content == " ".join(DEFAULT_REPLY.split()[:3])
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 3


def test_chat_stream_in_openai_chunks_with_usage(upstream):
    chunks = list(client(upstream).chat.completions.create(
        model="m", messages=PROMPT, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == DEFAULT_REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(DEFAULT_REPLY.split())
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_include_usage_has_no_usage_chunk(upstream):
    chunks = list(client(upstream).chat.completions.create(model="m", messages=PROMPT, stream=True))
    assert all(c.choices and c.usage is None for c in chunks)


def test_raw_stream_ends_with_done(upstream):
    body = {"model": "m", "messages": PROMPT, "stream": True}
    lines = httpx.post(f"{upstream.url}/chat/completions", json=body).text.strip().split("\n\n")
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: {") for line in lines[:-1])


def test_completions_plain_and_streamed(upstream):
    c = client(upstream)
    out = c.completions.create(model="m", prompt="one two", max_tokens=2)
    assert out.choices[0].text == " ".join(DEFAULT_REPLY.split()[:2]) and out.usage.prompt_tokens == 2
    chunks = list(c.completions.create(model="m", prompt="x", stream=True,
                                       stream_options={"include_usage": True}))
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == DEFAULT_REPLY
    assert chunks[-1].usage.prompt_tokens == 1


def test_embeddings_are_deterministic_unit_vectors(upstream):
    c = client(upstream)
    a = c.embeddings.create(model="e", input=["alpha beta", "gamma"])  # the SDK asks for base64
    b = c.embeddings.create(model="e", input="alpha beta", encoding_format="float")
    assert len(a.data) == 2 and len(a.data[0].embedding) == 8
    assert a.data[0].embedding == pytest.approx(b.data[0].embedding, abs=1e-6)
    assert a.data[0].embedding != pytest.approx(a.data[1].embedding, abs=1e-3)
    assert sum(x * x for x in a.data[1].embedding) == pytest.approx(1.0, abs=1e-5)
    assert a.usage.prompt_tokens == 3


def test_models_and_unknown_route(upstream):
    assert [m.id for m in client(upstream).models.list()] == ["fake"]
    assert httpx.get(f"{upstream.url}/nope").status_code == 404


def test_options_round_trip_through_the_cli():
    opts = UpstreamOptions(reply="-dash first", latency_ms=2.5, fail_mode="close", require_key="k",
                           models=("a", "b"), fail_rate=0.25)
    assert parse_args(to_argv(opts))[0] == opts


def test_reply_and_required_key():
    with FakeUpstream(reply="short answer", require_key="s3cret") as up:
        with pytest.raises(openai.AuthenticationError):
            client(up).chat.completions.create(model="m", messages=PROMPT)
        with pytest.raises(openai.AuthenticationError):
            client(up, key="wrong").models.list()
        out = client(up, key="s3cret").chat.completions.create(model="m", messages=PROMPT)
        assert out.choices[0].message.content == "short answer"
        assert httpx.get(f"{up.base}/healthz").status_code == 200  # health needs no key


@pytest.mark.parametrize(("mode", "error"), [
    ("status500", openai.InternalServerError),
    ("status429", openai.RateLimitError),
    ("close", openai.APIConnectionError),
    ("hang", openai.APITimeoutError),
    ("midstream", openai.APIConnectionError),
])
def test_failure_modes_on_a_plain_request(mode, error):
    with FakeUpstream(fail_rate=1.0, fail_mode=mode) as up:
        with pytest.raises(error):
            client(up, timeout=1).chat.completions.create(model="m", messages=PROMPT)
        assert httpx.get(f"{up.base}/healthz").status_code == 200  # still alive and healthy


def test_midstream_failure_cuts_a_stream_after_some_chunks():
    with FakeUpstream(fail_rate=1.0, fail_mode="midstream") as up:
        got = []
        with pytest.raises((httpx.TransportError, openai.APIConnectionError)):
            for chunk in client(up).chat.completions.create(model="m", messages=PROMPT, stream=True):
                got.append(chunk)
        assert 1 <= len(got) < len(DEFAULT_REPLY.split())


def test_fail_rate_is_a_share_of_requests():
    with FakeUpstream(fail_rate=0.5, seed=7) as up:
        body = {"model": "m", "messages": PROMPT}
        with httpx.Client() as http:
            codes = [http.post(f"{up.url}/chat/completions", json=body).status_code for _ in range(200)]
    assert set(codes) == {200, 500} and 60 <= codes.count(500) <= 140


def test_latency_and_pacing_are_lower_bounds():
    with FakeUpstream(latency_ms=150, tokens_per_s=50) as up:
        t0 = time.perf_counter()
        client(up).chat.completions.create(model="m", messages=PROMPT, max_tokens=1)
        assert time.perf_counter() - t0 >= 0.15
        t0 = time.perf_counter()
        list(client(up).chat.completions.create(model="m", messages=PROMPT, stream=True, max_tokens=5))
        assert time.perf_counter() - t0 >= 0.15 + 5 / 50


def test_kill_and_restart_on_the_same_port():
    with FakeUpstream(name="b") as up:
        url, c = up.url, client(up)
        assert c.chat.completions.create(model="m", messages=PROMPT).system_fingerprint == "b"
        up.kill()
        with pytest.raises(openai.APIConnectionError):
            c.chat.completions.create(model="m", messages=PROMPT)
        up.restart()
        assert up.url == url
        assert c.chat.completions.create(model="m", messages=PROMPT).system_fingerprint == "b"
