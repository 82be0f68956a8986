"""Streaming through the gateway with the default output guardrails: text flows at the engine's cadence
(one content delta per word, no empty deltas), a secret split across many chunks is still redacted whole,
and a ``block`` stops the stream before the match leaves."""

from __future__ import annotations

import httpx
import orjson
import pytest

from aifab.config import load_settings
from aifab.gateway.front import Gateway
from aifab.gateway.guards import Guardrails
from aifab.serve import ModelPool, create_app
from aifab.testing import FakeEngine, FakeRuntime

PROSE = ("The sea rolls in under a grey sky and the gulls call over the harbour while the boats rock "
         "gently at their moorings, waiting for the tide to turn and the wind to rise before the long "
         "night comes down over the water and the lights of the town begin to shine one by one")
WORDS = PROSE.split()[:50]


async def _events(reply: str, *, word_tokens: bool, **guardrails: object) -> list[dict]:
    settings = load_settings(gateway={"guardrails": guardrails})
    engine = FakeEngine("fake", FakeRuntime(reply, word_tokens=word_tokens), context_length=4096)
    app = Gateway(create_app(ModelPool({"fake": engine})), settings,
                  guardrails=Guardrails(settings.gateway.guardrails))
    body = {"model": "fake", "messages": [{"role": "user", "content": "Tell me about the sea."}],
            "max_tokens": 400, "stream": True, "temperature": 0}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            r = await http.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            lines = [ln[6:] for ln in r.text.split("\n\n") if ln.startswith("data: ")]
    finally:
        engine.close()
    assert lines[-1] == "[DONE]"
    return [orjson.loads(ln) for ln in lines[:-1]]


def _deltas(events: list[dict]) -> list[dict]:
    return [c["delta"] for e in events for c in e["choices"]]


def _text(events: list[dict]) -> str:
    return "".join(d.get("content") or "" for d in _deltas(events))


@pytest.mark.parametrize("enabled", [True, False])
async def test_fifty_one_word_tokens_give_at_least_45_content_deltas_and_no_empty_ones(enabled):
    events = await _events(" ".join(WORDS), word_tokens=True, enabled=enabled)
    deltas = _deltas(events)
    assert _text(events) == " ".join(WORDS)
    assert sum(1 for d in deltas if d.get("content")) >= 45
    assert deltas[0]["role"] == "assistant"  # the first delta carries the role, as OpenAI's does
    empty = [d for d in deltas[1:] if not d.get("content")]
    assert all(c["finish_reason"] for e in events for c in e["choices"] if not c["delta"].get("content")
               and "role" not in c["delta"]), empty


@pytest.mark.parametrize(("secret", "placeholder"), [
    ("sk-proj-abc123DEF456ghi789JKL012mno", "[SECRET]"),
    ("4111 1111 1111 1111", "[CARD]"),
])
async def test_a_secret_streamed_byte_by_byte_is_redacted_whole(secret, placeholder):
    reply = f"Here it is: {secret}. Keep it safe."
    events = await _events(reply, word_tokens=False, output_pii="redact", output_secrets="redact")
    expected = f"Here it is: {placeholder}. Keep it safe."
    assert _text(events) == expected
    # still streamed word by word (the word in progress is what is held), not one lump at the end
    assert sum(1 for d in _deltas(events) if d.get("content")) >= len(expected.split()) - 1


async def test_block_stops_the_stream_before_the_match_leaves():
    reply = "Write to ann.lee@example.com for the report, and have a good day."
    events = await _events(reply, word_tokens=False, output_pii="block")
    text = _text(events)
    assert "Write to " in text or text == ""
    assert "ann" not in text and "@" not in text
    assert events[-1]["choices"][0]["finish_reason"] == "content_filter"

