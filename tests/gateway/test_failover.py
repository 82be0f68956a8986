"""Three upstream replicas behind the gateway under sustained load, one killed mid-run: no non-streamed
request fails, streams under way end with a clean error event, traffic leaves the dead replica at once and
returns when it is back."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import openai
import pytest

from aifab.config import Settings
from aifab.gateway.front import Gateway
from aifab.serve import ModelPool, create_app
from aifab.testing import FakeUpstream
from aifab.testing.server import ThreadedServer

pytestmark = pytest.mark.integration
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello there"}]}


def gateway(upstreams: dict[str, FakeUpstream], **route: object) -> Gateway:
    pool = [{"url": u.url, "name": name} for name, u in upstreams.items()]
    settings = Settings(gateway={"routes": {"chat": {"upstreams": pool, **route}}, "health_interval": 0.25})
    return Gateway(create_app(ModelPool({})), settings)


@pytest.fixture
def replicas():
    long_reply = " ".join(f"word{i}" for i in range(120))  # 3 s of stream at 40 tokens/s
    ups = {name: FakeUpstream(name=name, latency_ms=5, tokens_per_s=40, reply=long_reply) for name in "abc"}
    yield ups
    for u in ups.values():
        u.close()


async def _load(url: str, seconds: float, log: list[tuple[float, str, int]], workers: int = 6) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        async def worker() -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                r = await http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 3})
                log.append((time.monotonic(), r.headers.get("x-aifab-upstream", "-"), r.status_code))

        await asyncio.gather(*(worker() for _ in range(workers)))


def test_killed_replica_fails_no_request_and_comes_back(replicas):
    with ThreadedServer(gateway(replicas)) as gw:
        log: list[tuple[float, str, int]] = []

        async def scenario() -> tuple[float, float, float]:
            load = asyncio.ensure_future(_load(gw.url, 7.0, log))
            await asyncio.sleep(1.5)
            await asyncio.to_thread(replicas["b"].kill)
            killed = time.monotonic()
            await asyncio.sleep(1.5)
            restarting = time.monotonic()
            await asyncio.to_thread(replicas["b"].start)
            back = time.monotonic()
            await load
            return killed, restarting, back

        killed, restarting, back = asyncio.run(scenario())
    statuses = Counter(s for _, _, s in log)
    assert statuses == {200: len(log)}, statuses  # not one failed request
    before = Counter(u for t, u, _ in log if t < killed)
    assert set(before) == {"a", "b", "c"}  # all three took traffic
    after = [u for t, u, _ in log if killed + 1.0 < t < restarting]
    assert after and "b" not in after  # moved within a second
    returned = [t for t, u, _ in log if u == "b" and t > back]
    assert returned, "the replica never got traffic again"


def test_streams_on_a_killed_replica_end_with_an_error_event(replicas):
    with ThreadedServer(gateway(replicas)) as gw:
        async def stream(i: int) -> tuple[str, list[str]]:
            async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
                body = {**CHAT, "stream": True, "max_tokens": 200, "user": f"user-{i}"}
                async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                    events = [line async for line in r.aiter_lines() if line.startswith("data: ")]
                    return r.headers["x-aifab-upstream"], events

        async def scenario() -> list[tuple[str, list[str]]]:
            tasks = [asyncio.ensure_future(stream(i)) for i in range(6)]
            await asyncio.sleep(0.6)
            await asyncio.to_thread(replicas["b"].kill)
            return await asyncio.gather(*tasks)

        results = asyncio.run(scenario())
    on_b = [events for name, events in results if name == "b"]
    others = [events for name, events in results if name != "b"]
    assert on_b and others
    for events in on_b:
        last = json.loads(events[-1].removeprefix("data: "))
        assert last["error"]["code"] == "upstream_error" and "mid-stream" in last["error"]["message"]
        assert len(events) > 2  # it had been streaming
    for events in others:
        assert events[-1] == "data: [DONE]"


def test_the_openai_sdk_sees_a_mid_stream_failure_as_an_error(replicas):
    with ThreadedServer(gateway({"b": replicas["b"]})) as gw:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(**CHAT, stream=True, max_tokens=200)
        got = [next(iter(stream))]
        replicas["b"].kill()
        with pytest.raises(openai.APIError, match="mid-stream"):
            for chunk in stream:
                got.append(chunk)
        assert got[0].choices[0].delta.role == "assistant"


def test_retries_a_failing_replica_and_falls_back_to_another_route():
    with FakeUpstream(name="bad", fail_rate=1.0, fail_mode="status500") as bad, \
            FakeUpstream(name="spare", reply="from the spare") as spare:
        settings = Settings(gateway={"routes": {
            "chat": {"upstreams": [{"url": bad.url, "name": "bad"}], "fallback": ["backup"]},
            "backup": {"upstreams": [{"url": spare.url, "name": "spare"}]},
        }})
        with ThreadedServer(Gateway(create_app(ModelPool({})), settings)) as gw:
            r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10)
    assert r.status_code == 200
    assert r.headers["x-aifab-upstream"] == "spare"
    assert r.json()["choices"][0]["message"]["content"] == "from the spare"
    assert r.json()["model"] == "chat"  # the name the client called


def test_every_upstream_down_is_a_502_in_the_openai_envelope():
    with FakeUpstream(name="gone") as gone:
        settings = Settings(gateway={"routes": {"chat": {"upstreams": [{"url": gone.url}]}}})
        gone.kill()
        with ThreadedServer(Gateway(create_app(ModelPool({})), settings)) as gw:
            r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10)
    assert r.status_code == 502
    assert "every upstream of 'chat' failed" in r.json()["error"]["message"]


def test_a_hanging_upstream_times_out_and_the_next_one_answers():
    with FakeUpstream(name="stuck", fail_rate=1.0, fail_mode="hang") as stuck, FakeUpstream(name="ok") as ok:
        pool = [{"url": stuck.url, "name": "stuck"}, {"url": ok.url, "name": "ok"}]
        settings = Settings(gateway={"routes": {"chat": {"upstreams": pool, "balance": "round_robin",
                                                          "first_token_timeout": 0.5}}})
        with ThreadedServer(Gateway(create_app(ModelPool({})), settings)) as gw:
            codes = [httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10) for _ in range(4)]
    assert [r.status_code for r in codes] == [200] * 4
    assert {r.headers["x-aifab-upstream"] for r in codes} == {"ok"}
