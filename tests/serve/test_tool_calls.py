"""Tool calls over HTTP with the openai SDK, on the fake engine (its reply is what a model would write):
``auto`` parsing streamed and whole, tool results sent back, ``tool_choice`` none, and the 400s."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from aifab.serve import ModelPool, create_app
from aifab.testing import FakeEngine, FakeRuntime

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
SEARCH = {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {}}}}
ONE_CALL = 'Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
TWO_CALLS = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
             '<tool_call>\n{"name": "search", "arguments": {"q": "fjords"}}\n</tool_call>')
ASK = [{"role": "user", "content": "Weather in Paris?"}]


async def sdk(reply: str | None) -> AsyncIterator[tuple[openai.AsyncOpenAI, FakeEngine]]:
    engine = FakeEngine(runtime=FakeRuntime(reply, word_tokens=True), context_length=4096)
    app = create_app(ModelPool({"fake": engine}))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    async with openai.AsyncOpenAI(api_key="none", base_url="http://test/v1", http_client=http, max_retries=0) as c:
        yield c, engine
    engine.close()


@pytest.fixture
async def one_call() -> AsyncIterator[tuple[openai.AsyncOpenAI, FakeEngine]]:
    async for x in sdk(ONE_CALL):
        yield x


@pytest.fixture
async def two_calls() -> AsyncIterator[tuple[openai.AsyncOpenAI, FakeEngine]]:
    async for x in sdk(TWO_CALLS):
        yield x


@pytest.fixture
async def echo() -> AsyncIterator[tuple[openai.AsyncOpenAI, FakeEngine]]:
    async for x in sdk(None):  # the fake answers with its prompt: what the template rendered
        yield x


async def test_auto_call_whole(one_call: Any) -> None:
    client, _ = one_call
    r = await client.chat.completions.create(model="fake", messages=ASK, tools=[WEATHER], temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me look."
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}


async def test_auto_call_streamed_through_the_sdk_helper(one_call: Any) -> None:
    client, _ = one_call
    async with client.chat.completions.stream(model="fake", messages=ASK, tools=[WEATHER], temperature=0) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me look."
    assert [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls] == [
        ("get_weather", {"city": "Paris"})]


async def test_streamed_fragments_have_openai_shape(two_calls: Any) -> None:
    client, _ = two_calls
    stream = await client.chat.completions.create(model="fake", messages=ASK, tools=[WEATHER, SEARCH],
                                                  temperature=0, stream=True)
    fragments, finishes = [], []
    async for chunk in stream:
        choice = chunk.choices[0]
        fragments += choice.delta.tool_calls or []
        finishes.append(choice.finish_reason)
    firsts = [f for f in fragments if f.id]
    assert [f.index for f in firsts] == [0, 1] and all(f.type == "function" for f in firsts)
    assert [f.function.name for f in firsts] == ["get_weather", "search"]
    assert all(f.id is None and f.function.name is None for f in fragments if f not in firsts)
    args = {i: "".join(f.function.arguments or "" for f in fragments if f.index == i) for i in (0, 1)}
    assert json.loads(args[0]) == {"city": "Oslo"} and json.loads(args[1]) == {"q": "fjords"}
    assert finishes[-1] == "tool_calls" and set(finishes[:-1]) == {None}


async def test_parallel_tool_calls_false_keeps_the_first(two_calls: Any) -> None:
    client, _ = two_calls
    r = await client.chat.completions.create(model="fake", messages=ASK, tools=[WEATHER, SEARCH], temperature=0,
                                             parallel_tool_calls=False)
    assert [c.function.name for c in r.choices[0].message.tool_calls] == ["get_weather"]
    assert r.choices[0].finish_reason == "tool_calls"


async def test_a_call_to_an_unknown_tool_or_broken_json_is_text() -> None:
    async for client, _ in sdk('<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>'):
        r = await client.chat.completions.create(model="fake", messages=ASK, tools=[WEATHER], temperature=0)
        assert r.choices[0].finish_reason == "stop" and not r.choices[0].message.tool_calls
        assert r.choices[0].message.content.startswith("<tool_call>")


async def test_tool_results_are_rendered_back(echo: Any) -> None:
    client, _ = echo
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'}]
    r = await client.chat.completions.create(model="fake", messages=messages, tools=[WEATHER], temperature=0,
                                             max_tokens=3000)
    prompt = r.choices[0].message.content
    assert '<|system|>You are a function calling AI model' in prompt and json.dumps(WEATHER) in prompt
    # (with tools offered, the echoed call in the history would be parsed as a new call: ask without)
    r = await client.chat.completions.create(model="fake", messages=messages, temperature=0, max_tokens=3000)
    prompt = r.choices[0].message.content
    assert '<|assistant|><tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in prompt
    assert '<|user|><tool_response>\n{"temp_c": 21}\n</tool_response>' in prompt


async def test_tool_choice_none_offers_no_tools(echo: Any) -> None:
    client, _ = echo
    r = await client.chat.completions.create(model="fake", messages=ASK, tools=[WEATHER], tool_choice="none",
                                             temperature=0, max_tokens=3000)
    assert "function calling" not in r.choices[0].message.content and not r.choices[0].message.tool_calls


@pytest.mark.parametrize(("extra", "param"), [
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"parallel_tool_calls": True}, "parallel_tool_calls"),
    ({"tools": []}, "tools"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "search"}}}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools.0.function.name"),
    ({"tools": [{"type": "retrieval"}]}, "tools.0.type"),
    ({"logprobs": True}, "logprobs"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"messages": [{"role": "user", "content": "hi", "audio": {"id": "a"}}]}, "messages[0].audio"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "string", "pattern": "^a+$"}}}}}],
      "tool_choice": "required"}, "tools"),
    ({"tools": [WEATHER], "tool_choice": "required", "stop": ["}"]}, "stop"),
    ({"tools": [WEATHER], "tool_choice": "required", "max_tokens": 20}, "max_tokens"),
    ({"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
])
async def test_unsupported_or_malformed_tool_fields_are_400s_naming_the_field(one_call: Any, extra: dict[str, Any],
                                                                           param: str) -> None:
    client, _ = one_call
    body = {"model": "fake", "messages": ASK, **extra}
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(**body)
    assert err.value.status_code == 400
    assert err.value.body["param"] == param, err.value.body  # type: ignore[index]


async def test_assistant_turns_echoed_back_by_the_sdk_pass(one_call: Any) -> None:
    client, _ = one_call
    first = await client.chat.completions.create(model="fake", messages=ASK, tools=[WEATHER], temperature=0)
    history = [*ASK, first.choices[0].message.model_dump(), {"role": "tool", "tool_call_id":
                                                             first.choices[0].message.tool_calls[0].id, "content": "21C"}]
    again = await client.chat.completions.create(model="fake", messages=history, tools=[WEATHER], temperature=0)
    assert again.choices[0].finish_reason == "tool_calls"


async def test_langchain_bind_tools_gets_the_calls_streamed_and_not(one_call: Any) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    client, _ = one_call
    llm = langchain_openai.ChatOpenAI(model="fake", api_key="none", base_url="http://test/v1", max_retries=0,
                                      http_async_client=client._client, temperature=0).bind_tools([WEATHER])
    message = await llm.ainvoke("Weather in Paris?")
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("get_weather", {"city": "Paris"})]
    merged = None
    async for chunk in llm.astream("Weather in Paris?"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [("get_weather", {"city": "Paris"})]
