"""Forced tool calls on the real engines: the default SmolLM2 GGUF on llama.cpp and a tiny torch Llama."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from aifab.config import Settings
from aifab.engines import load_engine
from aifab.engines.protocol import Engine
from aifab.engines.tools import parse_whole
from aifab.engines.tools.grammar import ConstrainedCall, call_schema
from aifab.registry.defaults import DEFAULTS, locate
from aifab.registry.inspect import inspect_path
from aifab.testing.conformance import collect
from aifab.testing.grammars import varied_tools

pytestmark = pytest.mark.slow
ORDER = {"type": "function", "function": {"name": "order", "parameters": {"type": "object", "properties": {
    "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"},
              "qty": {"type": "integer", "minimum": 1, "maximum": 9}}, "required": ["sku", "qty"]}, "minItems": 1},
    "express": {"type": "boolean"}}, "required": ["items"]}}}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"]}}}


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = locate(DEFAULTS[0])
    assert path is not None
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), engines={"max_batch": 4, "context_per_sequence": 1024})
    engine = load_engine(inspect_path(path, DEFAULTS[0].name), settings)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from aifab.engines.torch import TorchEngine
    from aifab.testing.models import make_tiny_llama

    path = make_tiny_llama(tmp_path_factory.mktemp("tiny"))
    engine = TorchEngine(inspect_path(Path(path), "tiny"),
                         Settings(data_dir=tmp_path_factory.mktemp("d"), engines={"threads": 1, "max_batch": 4}))
    yield engine
    engine.close()


async def forced(engine: Engine, tool: dict[str, Any], max_tokens: int, temperature: float) -> None:
    prompt = engine.render_chat([{"role": "user", "content": "What is the weather in Paris?"}], [tool])
    schema = call_schema([tool], max_tokens)
    text, last = await collect(engine, prompt, temperature=temperature, max_tokens=max_tokens, json_schema=schema,
                               seed=7)
    assert last.finish_reason == "stop" and last.completion_tokens <= max_tokens
    content, calls = parse_whole(ConstrainedCall(), text)
    assert content == "" and [c.name for c in calls] == [tool["function"]["name"]]
    args = json.loads(calls[0].arguments)
    assert jsonschema_rs.validator_for(tool["function"]["parameters"]).is_valid(args), args


@pytest.mark.parametrize(("tool", "temperature"), [(WEATHER, 0), (WEATHER, 1.0), (ORDER, 0),
                                                   (varied_tools(1, seed=5)[0], 0)])
async def test_smollm2_forced_calls_validate(smollm2: Engine, tool: dict[str, Any], temperature: float) -> None:
    await forced(smollm2, tool, 400, temperature)


async def test_tiny_torch_forced_calls_validate(tiny: Engine) -> None:
    for tool in [WEATHER, ORDER]:  # random weights: the grammar alone makes these calls
        await forced(tiny, tool, 240, 1.0)


async def test_llamacpp_compiles_a_schema_once(smollm2: Engine) -> None:
    before = len(smollm2.runtime._grammars)  # type: ignore[attr-defined]
    schema = call_schema([WEATHER], 128)
    for _ in range(3):
        await collect(smollm2, "Hi", temperature=0, max_tokens=128, json_schema=schema)
    assert len(smollm2.runtime._grammars) == before + 1  # type: ignore[attr-defined]
