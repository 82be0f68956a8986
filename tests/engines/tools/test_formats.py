"""Tool-bearing conversations rendered through chat templates: the model's own tool format when its
template has one, the Hermes format otherwise."""

from __future__ import annotations

import json

import pytest

from aifab.engines.tools import parse_whole, parser_for, render_with_tools, tool_format
from aifab.registry.inspect import gguf_metadata
from aifab.testing.models import smollm2_gguf_path

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
CONVERSATION = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
]
# A template in the style of Qwen2.5's: it lists tools itself and writes <tool_call> blocks.
NATIVE = (
    "{% if tools %}<|im_start|>system\nTOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content or '' }}"
    "{% for c in m.tool_calls or [] %}<tool_call>{{ c.function.name }}:{{ c.function.arguments.city }}</tool_call>{% endfor %}"
    "<|im_end|>\n{% endfor %}<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def smollm2_template() -> str:
    return str(gguf_metadata(smollm2_gguf_path())["tokenizer.chat_template"])


def test_smollm2_has_no_tool_format_so_gets_hermes(smollm2_template: str) -> None:
    assert tool_format(smollm2_template) == ("hermes", False)
    prompt = render_with_tools(smollm2_template, CONVERSATION, {}, [WEATHER])
    system = prompt.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nYou are a function calling AI model")
    assert json.dumps(WEATHER) in system
    assert "You are a helpful AI assistant named SmolLM" not in prompt  # our system turn replaced the default
    assert '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>' in prompt
    assert '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>' in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_a_system_prompt_keeps_its_text_and_gains_the_tools(smollm2_template: str) -> None:
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]
    prompt = render_with_tools(smollm2_template, messages, {}, [WEATHER])
    assert prompt.startswith("<|im_start|>system\nBe terse.\n\nYou are a function calling AI model")
    assert prompt.count("<|im_start|>system") == 1


def test_results_of_parallel_calls_share_one_turn(smollm2_template: str) -> None:
    second = {**CALL, "id": "call_2"}
    messages = [*CONVERSATION[:1], {"role": "assistant", "content": "", "tool_calls": [CALL, second]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a"},
                {"role": "tool", "tool_call_id": "call_2", "content": "b"}]
    prompt = render_with_tools(smollm2_template, messages, {}, None)
    assert "<tool_response>\na\n</tool_response>\n<tool_response>\nb\n</tool_response>" in prompt
    assert "function calling AI model" not in prompt  # no tools offered, none listed


def test_a_template_with_its_own_tool_format_renders_tools_itself() -> None:
    assert tool_format(NATIVE) == ("hermes", True)
    prompt = render_with_tools(NATIVE, CONVERSATION, {}, [WEATHER])
    assert prompt.startswith("<|im_start|>system\nTOOLS:get_weather;")
    assert "<tool_call>get_weather:Paris</tool_call>" in prompt  # arguments reached the template as an object
    assert "<|im_start|>tool\n" in prompt


def test_mistral_templates_get_the_mistral_parser() -> None:
    template = "{% for m in messages %}{{ m.content }}{% endfor %}{% if tools %}[AVAILABLE_TOOLS]{% endif %}[TOOL_CALLS]"
    assert tool_format(template) == ("mistral", True)
    content, calls = parse_whole(parser_for(template, ["get_weather"]),
                                 '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo"}}]')
    assert content == "" and calls[0].name == "get_weather"
