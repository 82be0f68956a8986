"""Refused requests cost nothing: a 400 or 429 leaves usage, the token budget and the tokens/min bucket
as they were; an answered request is counted as before."""

from __future__ import annotations

import httpx
import pytest

from aifab.config import load_settings
from aifab.gateway.front import Gateway
from aifab.gateway.keys import KeyStore
from aifab.gateway.quotas import MemoryLimiter
from aifab.serve import ModelPool, create_app
from aifab.state import Database
from aifab.testing import FakeEngine

LONG = "word " * 2000  # far over the fake model's 512-token context: the model's server refuses it (400)


@pytest.fixture
async def gateway(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data")
    db = Database(settings.effective_database_url)
    db.upgrade()
    keys = KeyStore(db)
    limiter = MemoryLimiter(db)
    engine = FakeEngine("m")
    secret = keys.create("k", budget_tokens=1_000_000, tpm=100_000)[1]
    app = Gateway(create_app(ModelPool({"m": engine})), settings, keys=keys, limiter=limiter, db=db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 headers={"Authorization": f"Bearer {secret}"}) as http:
        yield http, limiter, keys.get("k")
    await app.aclose()
    engine.close()
    db.close()


def chat(content: str, **extra) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


async def test_refused_requests_cost_nothing(gateway):
    http, limiter, key = gateway
    for _ in range(3):
        r = await http.post("/v1/chat/completions", json=chat(LONG))
        assert r.status_code == 400, r.text
    limiter.flush()  # the budget's spend is written in batches
    usage = (await http.get("/v1/usage")).json()["keys"][0]
    assert usage["errors"]["4xx"] == 3
    assert usage["prompt_tokens"] == usage["completion_tokens"] == 0 and usage["budget_spent"] == 0
    bucket = limiter._bucket(key.id, "tpm", key.tpm, limiter._clock())
    assert bucket is not None and bucket.level == key.tpm  # the up-front charge was given back

    ok = await http.post("/v1/chat/completions", json=chat("hello there", max_tokens=4))
    assert ok.status_code == 200, ok.text
    limiter.flush()
    usage = (await http.get("/v1/usage")).json()["keys"][0]
    spent = ok.json()["usage"]
    assert usage["prompt_tokens"] > 0 and usage["budget_spent"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] == spent["completion_tokens"]
