"""Tool calls with the openai SDK against the app serving the real default model (SmolLM2 on llama.cpp):
forced calls streamed and not, and a tool result sent back and answered."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jsonschema_rs
import openai
import pytest

from aifab.config import Settings
from aifab.engines import load_engine
from aifab.engines.protocol import Engine
from aifab.registry.defaults import DEFAULTS, locate
from aifab.registry.inspect import inspect_path
from aifab.serve import ModelPool, create_app

pytestmark = pytest.mark.slow
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                          "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path = locate(DEFAULTS[0])
    assert path is not None
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), engines={"max_batch": 2, "context_per_sequence": 1024})
    loaded = load_engine(inspect_path(path, DEFAULTS[0].name), settings)
    yield loaded
    loaded.close()


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[openai.AsyncOpenAI]:
    app = create_app(ModelPool({"smollm2": engine}))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=600)
    async with openai.AsyncOpenAI(api_key="none", base_url="http://test/v1", http_client=http, max_retries=0) as c:
        yield c


def valid(arguments: str) -> dict[str, Any]:
    args = json.loads(arguments)
    assert jsonschema_rs.validator_for(WEATHER["function"]["parameters"]).is_valid(args), args
    return args


async def test_named_call_whole_then_streamed(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(model="smollm2", messages=ASK, tools=[WEATHER], tool_choice=NAMED,
                                             temperature=0, max_tokens=128)
    assert r.choices[0].finish_reason == "tool_calls"
    [call] = r.choices[0].message.tool_calls
    whole = valid(call.function.arguments)
    async with client.chat.completions.stream(model="smollm2", messages=ASK, tools=[WEATHER], tool_choice=NAMED,
                                              temperature=0, max_tokens=128) as stream:
        pieces = [e async for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = await stream.get_final_completion()
    assert len(pieces) > 1  # the arguments streamed as they were generated
    assert valid(final.choices[0].message.tool_calls[0].function.arguments) == whole  # same seedless greedy call


async def test_required_call_then_the_result_is_answered(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(model="smollm2", messages=ASK, tools=[WEATHER], tool_choice="required",
                                             temperature=0, max_tokens=128)
    message = r.choices[0].message
    call = message.tool_calls[0]
    assert call.function.name == "get_weather"
    valid(call.function.arguments)
    history = [*ASK, message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 21, "sky": "sunny"}'}]
    answer = await client.chat.completions.create(model="smollm2", messages=history, tools=[WEATHER], temperature=0,
                                                  max_tokens=48)
    assert answer.choices[0].message.content or answer.choices[0].message.tool_calls
