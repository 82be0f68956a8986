"""The ``ToolCallParser`` conformance suite. A parser proves itself by subclassing
:class:`ToolParserConformance` and saying how its format writes calls::

    class TestMyParser(ToolParserConformance):
        def make(self, tool_names): return MyParser(tool_names)
        def write(self, calls): return "".join(f"<call>{json.dumps(c)}</call>" for c in calls)
        malformed = "<call>{\"name\": \"get_weather\", \"arguments\": {</call>"

Every case runs on the whole text in one ``feed`` and streamed (one character a delta, and random
splits); the answers must agree, because a client streaming and a client not must see the same calls.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from aifab.engines.tools.protocol import CallFragment, Parsed, ToolCall, ToolCallParser, assemble

TOOLS = ["get_weather", "search"]
Call = dict[str, Any]  # {"name": ..., "arguments": {...}}


def splits(text: str, seed: int) -> list[str]:
    """``text`` cut at random places (pieces of 1 to 7 characters)."""
    rng, pieces, i = random.Random(seed), [], 0
    while i < len(text):
        n = rng.randint(1, 7)
        pieces.append(text[i : i + n])
        i += n
    return pieces


def run(parser: ToolCallParser, pieces: list[str]) -> tuple[str, list[CallFragment]]:
    out = Parsed()
    for piece in pieces:
        out += parser.feed(piece)
    out += parser.finish()
    return out.text, out.calls


class ToolParserConformance:
    """Behaviour every tool-call parser must show, streamed and not."""

    malformed: str = ""  # a call block whose JSON is broken, as the format would wrap it

    def make(self, tool_names: list[str] | None) -> ToolCallParser:  # pragma: no cover - by subclasses
        raise NotImplementedError

    def write(self, calls: list[Call]) -> str:  # pragma: no cover - by subclasses
        """The model text for ``calls`` (one block, or one block per call, as the format does)."""
        raise NotImplementedError

    def parse_every_way(self, text: str) -> tuple[str, list[ToolCall]]:
        """Parse ``text`` whole, one character a delta and in random pieces; all must agree."""
        ways = [[text], list(text)] + [splits(text, seed) for seed in range(3)]
        results = []
        for pieces in ways:
            content, fragments = run(self.make(TOOLS), pieces)
            self.check_fragments(fragments)
            results.append((content, [(c.name, json.loads(c.arguments)) for c in assemble(fragments)]))
        assert all(r == results[0] for r in results), results
        content, calls = run(self.make(TOOLS), [text])
        return content, assemble(calls)

    @staticmethod
    def check_fragments(fragments: list[CallFragment]) -> None:
        """OpenAI's streaming shape: a call's first fragment has its id and name, later ones neither."""
        seen: set[int] = set()
        for f in fragments:
            if f.index in seen:
                assert f.id is None and f.name is None
            else:
                assert f.id and f.name, f
                assert f.index == len(seen), "calls are numbered 0, 1, ... in order"
                seen.add(f.index)

    def test_plain_text_is_content(self) -> None:
        text = "Paris is the capital of France. 3 < 4 and a <tool"
        content, calls = self.parse_every_way(text)
        assert content == text and calls == []

    def test_text_before_a_call(self) -> None:
        args = {"city": "Paris", "unit": "celsius"}
        content, calls = self.parse_every_way("Let me check.\n" + self.write([{"name": "get_weather", "arguments": args}]))
        assert content == "Let me check."
        assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", args)]
        assert calls[0].id.startswith("call_")

    def test_two_calls(self) -> None:
        wanted = [{"name": "get_weather", "arguments": {"city": "Oslo"}},
                  {"name": "search", "arguments": {"query": "fjords", "limit": 3}}]
        content, calls = self.parse_every_way(self.write(wanted))
        assert content == ""
        assert [{"name": c.name, "arguments": json.loads(c.arguments)} for c in calls] == wanted
        assert calls[0].id != calls[1].id

    def test_arguments_split_across_many_deltas(self) -> None:
        args = {"query": "naïve café — \"quoted\" {braces} </tool_call", "filters": {"years": [2020, 2021]}}
        text = self.write([{"name": "search", "arguments": args}])
        content, fragments = run(self.make(TOOLS), list(text))
        assert content == ""
        assert [(c.name, json.loads(c.arguments)) for c in assemble(fragments)] == [("search", args)]

    def test_malformed_json_is_text(self) -> None:
        content, calls = self.parse_every_way("Sure. " + self.malformed)
        assert calls == [] and content == "Sure. " + self.malformed

    def test_unknown_tool_is_text(self) -> None:
        text = self.write([{"name": "launch_rockets", "arguments": {}}])
        content, calls = self.parse_every_way(text)
        assert calls == [] and content == text.strip()

    def test_arguments_as_a_json_string(self) -> None:
        text = self.write([{"name": "get_weather", "arguments": json.dumps({"city": "Rome"})}])
        _, calls = self.parse_every_way(text)
        assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Rome"})]

    @pytest.mark.parametrize("cut", [1, 5, 12])
    def test_a_call_cut_short_is_text(self, cut: int) -> None:
        text = "Hi " + self.write([{"name": "get_weather", "arguments": {"city": "Lima"}}])[:-cut]
        content, calls = self.parse_every_way(text)
        assert calls == [] and content == text
