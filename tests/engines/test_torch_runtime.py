"""The torch engine over a tiny random Llama: batching, sampling, grammars, adapters, slots."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from aifab.config import Settings
from aifab.engines.protocol import GenerationRequest, SamplingParams
from aifab.errors import InvalidRequest, NotFound
from aifab.testing import EngineConformance
from aifab.testing.conformance import PERSON, collect

pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aifab.testing.models import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def _engine(path: Path, tmp: Path, max_batch: int = 4):
    from aifab.engines.torch import TorchEngine
    from aifab.registry.inspect import inspect_path

    settings = Settings(data_dir=tmp, engines={"threads": 1, "max_batch": max_batch})
    return TorchEngine(inspect_path(path, "tiny"), settings)


@pytest.fixture(scope="module")
def tiny_engine(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    engine = _engine(tiny_dir, tmp_path_factory.mktemp("data"))
    yield engine
    engine.close()


class TestTorchConformance(EngineConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def engine(cls, tiny_engine):
        return tiny_engine


PROMPTS = [
    "Hi",
    "The quick brown fox jumps over the lazy dog, again and again, until the dog finally wakes up and",
    "1 2 3 4 5 6 7 8",
    "Once upon a time " * 12,
    "a",
]


async def _greedy(engine, prompt: str, n: int, delay: float = 0.0) -> str:
    await asyncio.sleep(delay)
    text, last = await collect(engine, prompt, temperature=0, max_tokens=n)
    assert last.completion_tokens == n or last.finish_reason == "stop"
    return text


async def test_batched_greedy_equals_alone(tiny_engine) -> None:
    """Staggered starts mix prompt chunks with decodes and reuse slots out of order."""
    lengths = [24, 20, 24, 16, 24]
    alone = [await _greedy(tiny_engine, p, n) for p, n in zip(PROMPTS, lengths, strict=True)]
    assert all(alone)
    together = await asyncio.gather(
        *(
            _greedy(tiny_engine, p, n, delay=0.02 * i)
            for i, (p, n) in enumerate(zip(PROMPTS, lengths, strict=True))
        )
    )
    assert together == alone


async def test_seed_gives_same_output_whatever_shares_the_batch(tiny_engine) -> None:
    kw = dict(temperature=1.0, top_p=0.9, seed=42, max_tokens=20)
    a, _ = await collect(tiny_engine, PROMPTS[1], **kw)
    b, _ = await collect(tiny_engine, PROMPTS[1], **kw)
    crowd = await asyncio.gather(
        collect(tiny_engine, PROMPTS[1], **kw),
        collect(tiny_engine, PROMPTS[3], temperature=0.8, max_tokens=20),
        collect(tiny_engine, PROMPTS[0], temperature=1.0, seed=7, max_tokens=20),
    )
    assert a == b == crowd[0][0]
    c, _ = await collect(tiny_engine, PROMPTS[1], **{**kw, "seed": 43})
    assert c != a


async def test_penalties_change_the_output(tiny_engine) -> None:
    plain, _ = await collect(tiny_engine, PROMPTS[2], temperature=0, max_tokens=24)
    penalised, _ = await collect(
        tiny_engine, PROMPTS[2], temperature=0, max_tokens=24, frequency_penalty=2.0, presence_penalty=2.0
    )
    assert penalised != plain


async def test_stop_string_and_max_tokens(tiny_engine) -> None:
    full, _ = await collect(tiny_engine, PROMPTS[0], temperature=0, max_tokens=30)
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    text, last = await collect(tiny_engine, PROMPTS[0], temperature=0, max_tokens=30, stop=[stop])
    assert last.finish_reason == "stop" and text == full[: full.index(stop)]
    _, last = await collect(tiny_engine, PROMPTS[0], temperature=0, max_tokens=5)
    assert last.finish_reason == "length" and last.completion_tokens == 5


@pytest.mark.parametrize("max_tokens", [200, 40])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
async def test_json_schema_forces_valid_terminated_json(
    tiny_engine, max_tokens: int, temperature: float
) -> None:
    runs = await asyncio.gather(
        *(
            collect(
                tiny_engine, p, temperature=temperature, seed=i, max_tokens=max_tokens, json_schema=PERSON
            )
            for i, p in enumerate(PROMPTS[:3])
        ),
        collect(tiny_engine, PROMPTS[3], temperature=temperature, max_tokens=max_tokens, json_schema={}),
        collect(tiny_engine, PROMPTS[4], temperature=temperature, max_tokens=20),  # free text alongside
    )
    for text, last in runs[:3]:
        assert last.finish_reason == "stop", text
        data = json.loads(text)
        assert set(data) == {"name", "age"} and isinstance(data["name"], str) and isinstance(data["age"], int)
    text, last = runs[3]
    assert last.finish_reason == "stop" and isinstance(json.loads(text), dict)


async def test_bad_schema_and_unknown_adapter_are_refused_before_streaming(tiny_engine) -> None:
    with pytest.raises(InvalidRequest):
        tiny_engine.prepare(
            GenerationRequest("x", SamplingParams(max_tokens=4, json_schema={"type": "nope"}))
        )
    with pytest.raises(NotFound):
        tiny_engine.prepare(GenerationRequest("x", SamplingParams(max_tokens=4), adapter="missing"))


async def test_many_concurrent_requests_complete_and_cancelled_ones_free_slots(tiny_engine) -> None:
    results = await asyncio.gather(
        *(collect(tiny_engine, f"{PROMPTS[1]} {i}", max_tokens=10) for i in range(10))
    )
    assert all(last.completion_tokens > 0 for _, last in results)
    streams = [
        tiny_engine.generate(GenerationRequest(p, SamplingParams(temperature=0.8, max_tokens=300)))
        for p in PROMPTS
    ]
    for s in streams[:3]:
        await anext(s)
    for s in streams:
        await s.aclose()
    for _ in range(500):
        if tiny_engine.health().running == 0 and tiny_engine.health().waiting == 0:
            break
        await asyncio.sleep(0.01)
    assert tiny_engine.health().running == 0
    text, _ = await collect(tiny_engine, PROMPTS[0], temperature=0, max_tokens=24)  # still serves afterwards
    assert text == await _greedy(tiny_engine, PROMPTS[0], 24)


def test_pieces_are_the_tokens_own_bytes(tiny_engine) -> None:
    rt = tiny_engine.runtime
    text = " héllo wörld ✓ 🎉 tabs\tand\nnewlines"
    ids = rt.tokenize(text)
    assert b"".join(rt.piece(i) for i in ids) == text.encode()
    assert rt.piece(rt.tokenizer.convert_tokens_to_ids("Ġ")) == b" "
    assert rt.is_end(rt.tokenizer.eos_token_id)


def _make_lora(base: Path, out: Path, seed: int) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    model.save_pretrained(out)
    return out


async def test_lora_adapters_per_request_in_one_batch(tiny_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    engine = _engine(tiny_dir, tmp_path)
    try:
        prompt = PROMPTS[1]
        base = await _greedy(engine, prompt, 16)
        await engine.load_adapter("a", str(_make_lora(tiny_dir, tmp_path / "a", 1)))
        await engine.load_adapter("b", str(_make_lora(tiny_dir, tmp_path / "b", 2)))

        async def run(adapter: str | None) -> str:
            req = GenerationRequest(prompt, SamplingParams(temperature=0, max_tokens=16), adapter=adapter)
            return "".join([d.text async for d in engine.generate(req)])

        alone = {name: await run(name) for name in (None, "a", "b")}
        assert alone[None] == base and len({base, alone["a"], alone["b"]}) == 3
        mixed = await asyncio.gather(run("a"), run(None), run("b"), run("a"))
        assert mixed == [alone["a"], base, alone["b"], alone["a"]]
    finally:
        engine.close()
