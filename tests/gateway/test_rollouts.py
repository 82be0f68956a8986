"""Canary, full promotion and rollback of a served model name, as the gateway applies them."""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest

from aifab.config import load_settings
from aifab.errors import InvalidRequest, NotFound
from aifab.gateway.front import Gateway
from aifab.gateway.rollouts import RolloutStore
from aifab.serve import ModelPool, create_app
from aifab.testing import FakeEngine, FakeRuntime


@pytest.fixture
def db(state_db):
    return state_db


def test_canary_full_and_rollback_keep_the_history_straight(db):
    store = RolloutStore(db)
    r = store.canary("assistant", "assistant-ft1", 10)
    assert (r.current, r.candidate, r.percent) == ("assistant", "assistant-ft1", 10)
    r = store.full("assistant", "assistant-ft1")
    assert (r.current, r.candidate, r.previous) == ("assistant-ft1", None, "assistant")
    r = store.canary("assistant", "assistant-ft2", 25)
    assert store.rollback("assistant").candidate is None  # stops the canary first
    assert store.rollback("assistant").current == "assistant"  # then undoes the full promotion
    with pytest.raises(InvalidRequest, match="nothing to roll back"):
        store.rollback("assistant")
    with pytest.raises(NotFound):
        store.rollback("never-rolled-out")
    with pytest.raises(InvalidRequest, match="between 0 and 100"):
        store.canary("assistant", "x", 100)


async def test_the_gateway_splits_traffic_as_the_rollout_says(tmp_path, db):
    engines = {"assistant": FakeEngine("assistant", FakeRuntime("old")),
               "assistant-ft1": FakeEngine("assistant-ft1", FakeRuntime("new"))}
    gw = Gateway(create_app(ModelPool(engines)), load_settings(data_dir=tmp_path), db=db)
    store = RolloutStore(db)

    async def answers(n: int) -> Counter[str]:
        seen: Counter[str] = Counter()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://t") as http:
            for _ in range(n):
                r = await http.post("/v1/chat/completions", json={
                    "model": "assistant", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]})
                assert r.json()["model"] == "assistant"  # clients keep calling the same name
                seen[r.json()["choices"][0]["message"]["content"]] += 1
        return seen

    assert await answers(20) == {"old": 20}
    store.canary("assistant", "assistant-ft1", 30)
    assert gw.rollouts is not None
    await gw.rollouts.refresh()
    split = await answers(400)
    assert 0.2 < split["new"] / 400 < 0.4
    store.full("assistant", "assistant-ft1")
    await gw.rollouts.refresh()
    assert await answers(20) == {"new": 20}
    store.rollback("assistant")
    await gw.rollouts.refresh()
    assert await answers(20) == {"old": 20}
    await gw.aclose()
    for e in engines.values():
        e.close()


async def test_every_answer_names_the_version_that_gave_it(tmp_path, db):
    """A canary is visible to a client: the header and ``system_fingerprint`` (body and every stream chunk)
    name the version that answered, while ``model`` stays the name the client called."""
    engines = {"assistant": FakeEngine("assistant", FakeRuntime("old")),
               "assistant-ft1": FakeEngine("assistant-ft1", FakeRuntime("new"))}
    gw = Gateway(create_app(ModelPool(engines)), load_settings(data_dir=tmp_path), db=db)
    RolloutStore(db).canary("assistant", "assistant-ft1", 50)
    assert gw.rollouts is not None
    await gw.rollouts.refresh()
    version_of = {"old": "assistant", "new": "assistant-ft1"}
    seen: set[str] = set()
    body = {"model": "assistant", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://t") as http:
        for session in range(40):
            headers = {"x-session-id": f"s{session}"}
            r = await http.post("/v1/chat/completions", json=body, headers=headers)
            answer = r.json()
            version = version_of[answer["choices"][0]["message"]["content"]]
            assert r.headers["x-aifab-model-version"] == answer["system_fingerprint"] == version
            assert answer["model"] == "assistant"
            seen.add(version)
            r = await http.post("/v1/chat/completions", json={**body, "stream": True}, headers=headers)
            chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
            assert r.headers["x-aifab-model-version"] == version  # sticky per session
            assert chunks and {c["system_fingerprint"] for c in chunks} == {version}
    assert seen == {"assistant", "assistant-ft1"}
    await gw.aclose()
    for e in engines.values():
        e.close()
