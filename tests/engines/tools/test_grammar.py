"""Forced tool calls: the narrowed schema, its 400s, and every call the grammars allow (random logits
through the engines' own samplers, 200 varied schemas) parsing, validating and ending in time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from aifab.engines.llamacpp.runtime import schema_to_gbnf
from aifab.engines.tools import parse_whole
from aifab.engines.tools.grammar import ConstrainedCall, call_schema
from aifab.errors import InvalidRequest
from aifab.testing.grammars import GbnfWalker, XgrammarWalker, varied_tools
from aifab.testing.models import smollm2_gguf_path
from aifab.testing.toolparsers import run, splits


def tool(params: dict[str, Any], name: str = "f") -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": params}}


def obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props)}


@pytest.mark.parametrize(("schema", "word"), [
    (obj(code={"type": "string", "pattern": "^[A-Z]{3}$"}), "pattern"),
    (obj(x={"not": {"type": "string"}}), "not"),
    (obj(x={"allOf": [{"type": "string"}]}), "allOf"),
    (obj(x={"type": "integer", "multipleOf": 5}), "multipleOf"),
    (obj(x={"enum": ['say "hi"']}), "quote"),
    ({"type": "object", "$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}},
      "properties": {"head": {"$ref": "#/$defs/n"}}}, "recursive"),
    (obj(x={"$ref": "https://example.com/s.json"}), "$ref"),
    (obj(x={"type": "integer", "minimum": 1.2, "maximum": 1.8}), "no integer"),
])
def test_a_schema_the_grammar_cannot_enforce_is_a_400_naming_the_tool(schema: dict[str, Any], word: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        call_schema([tool(schema, "book_flight")], 512)
    assert err.value.param == "tools"
    assert "tool 'book_flight'" in str(err.value) and word in str(err.value)


def test_max_tokens_too_small_for_any_call_names_the_tool_and_the_need() -> None:
    with pytest.raises(InvalidRequest) as err:
        call_schema([tool(obj(a={"type": "number"}, b={"type": "number"}), "measure")], 64)
    assert err.value.param == "max_tokens"
    need = int(str(err.value).split("at least ")[1])
    assert "tool 'measure'" in str(err.value) and need > 64
    call_schema([tool(obj(a={"type": "number"}, b={"type": "number"}), "measure")], need)  # and that is enough


def test_strings_shrink_to_fit_the_budget() -> None:
    params = obj(a={"type": "string"}, b={"type": "string", "maxLength": 10})
    wide = call_schema([tool(params)], 1024)["properties"]["arguments"]["properties"]
    tight = call_schema([tool(params)], 120)["properties"]["arguments"]["properties"]
    assert wide["a"]["maxLength"] == 64 and wide["b"]["maxLength"] == 10
    assert tight["a"]["maxLength"] < 64


def test_bounded_numbers_are_drawn_from_their_range() -> None:
    params = obj(n={"type": "integer", "minimum": 3, "maximum": 7},
                 x={"type": "number", "exclusiveMinimum": 0.1, "maximum": 0.5},
                 big={"type": "integer", "minimum": 10})
    args = call_schema([tool(params)], 4096)["properties"]["arguments"]["properties"]
    assert args["n"] == {"enum": [3, 4, 5, 6, 7]}
    assert all(0.1 < v <= 0.5 for v in args["x"]["enum"])
    assert args["big"]["enum"][0] == 10 and len(args["big"]["enum"]) == 256


def test_several_tools_make_one_choice_of_calls() -> None:
    schema = call_schema([tool(obj(a={"type": "string"}), "f"), tool(obj(b={"type": "boolean"}), "g")], 512)
    assert [b["properties"]["name"] for b in schema["anyOf"]] == [{"enum": ["f"]}, {"enum": ["g"]}]


def test_a_constrained_call_streams_its_arguments_and_matches_the_whole() -> None:
    text = '{"name": "get_weather", "arguments": {"city": "Pa}ris\tx", "deep": {"a": {"b": [1, 2]}}}}'
    whole_content, whole = parse_whole(ConstrainedCall(), text)
    assert whole_content == "" and [c.name for c in whole] == ["get_weather"]
    assert json.loads(whole[0].arguments) == {"city": "Pa}ris\tx", "deep": {"a": {"b": [1, 2]}}}
    for pieces in (list(text), splits(text, 1)):
        content, fragments = run(ConstrainedCall(), pieces)
        assert content == "" and fragments[0].name == "get_weather" and fragments[0].id
        assert sum(1 for f in fragments if f.arguments) > 3  # the arguments came as they were written
        assert json.loads("".join(f.arguments for f in fragments)) == json.loads(whole[0].arguments)


def check_walk(fn: dict[str, Any], text: str, tokens: int, ended: bool, max_tokens: int) -> None:
    assert ended and tokens <= max_tokens, (fn["name"], tokens, text)
    content, calls = parse_whole(ConstrainedCall(), text)
    assert content == "" and [c.name for c in calls] == [fn["name"]], text
    args = json.loads(calls[0].arguments)
    assert jsonschema_rs.validator_for(fn["parameters"]).is_valid(args), (fn["parameters"], args)


def walked(n: int, seed: int) -> list[tuple[dict[str, Any], dict[str, Any], int]]:
    """(tool, forced-call schema, max_tokens) for ``n`` varied tools; budgets cycle from tight to wide."""
    out = []
    for i, t in enumerate(varied_tools(n, seed)):
        for budget in ([256, 512, 1024][i % 3], 2048):
            try:
                out.append((t, call_schema([t], budget), budget))
                break
            except InvalidRequest as exc:
                assert exc.param == "max_tokens"
    return out


@pytest.mark.slow
def test_every_call_the_llamacpp_grammar_allows_parses_validates_and_ends_in_time() -> None:
    walker = GbnfWalker(smollm2_gguf_path())
    try:
        cases = walked(200, seed=1)
        assert len(cases) == 200
        for i, (t, schema, budget) in enumerate(cases):
            gbnf = schema_to_gbnf(schema)
            assert gbnf is not None
            check_walk(t["function"], *walker.walk(gbnf, budget, seed=i), budget)
    finally:
        walker.close()


@pytest.mark.slow
def test_every_call_the_torch_grammar_allows_parses_validates_and_ends_in_time(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    gguf = smollm2_gguf_path()
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(tmp_path)
    walker = XgrammarWalker(AutoTokenizer.from_pretrained(tmp_path))
    for i, (t, schema, budget) in enumerate(walked(30, seed=2)):  # xgrammar compiles in ~1 s a schema here
        check_walk(t["function"], *walker.walk(schema, budget, seed=i), budget)
